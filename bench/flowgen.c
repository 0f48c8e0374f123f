/* NetFlow v5 / v9 / IPFIX exporter for bench/collector_line_rate.py.
 *
 *   flowgen VERSION PORT FLOWS_PER_S SECONDS SUBSCRIBERS SUB_BASE SOURCES SEED [TEMPLATE_EVERY]
 *
 * VERSION 5, 9 or 10 (IPFIX). Sends to 127.0.0.1:PORT from each source
 * address of SOURCES (comma-separated, e.g. 127.0.0.2,127.0.0.3): one
 * exporter per source, round robin, paced to FLOWS_PER_S in total, for at
 * most SECONDS (or until SIGINT/SIGTERM).
 *
 * Every packet is unique: per exporter the sequence number is gap-free and
 * increasing (v5 and IPFIX count flows, v9 counts packets), and the flow
 * fields come from a PRNG. Every flow has a subscriber SUB_BASE + n
 * (n < SUBSCRIBERS, as an integer IPv4 address) on one side and an address
 * in 93.184.0.0/16 on the other, lasts under 5 s and ended within the last
 * second. v9 and IPFIX use a softflowd-like template of 13 fields (the
 * records bench/collector_ingest.py builds), as many records as fit in 1,400
 * bytes, the template in front of every TEMPLATE_EVERY-th packet of an
 * exporter (default 20, and the first).
 *
 * A datagram the kernel refuses (ENOBUFS, EAGAIN) is retried, never skipped,
 * so the sequence stays gap-free. Prints one line on stdout:
 *   packets flows bytes elapsed_s template_packets
 * where bytes is the sum of the octet fields sent: what a collector must
 * have stored.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SOURCES 16
#define MAX_PACKET 1600
#define BATCH 16            /* packets per sendmmsg; one pacing check per batch */

static volatile sig_atomic_t stopping = 0;
static void on_signal(int sig) { (void)sig; stopping = 1; }

static uint64_t rng_state;
static inline uint64_t rnd(void) {       /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static double now_s(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static inline uint8_t *put16(uint8_t *p, uint32_t v) { p[0] = v >> 8; p[1] = v; return p + 2; }
static inline uint8_t *put32(uint8_t *p, uint32_t v) {
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; return p + 4;
}
static inline uint8_t *put64(uint8_t *p, uint64_t v) {
    p = put32(p, (uint32_t)(v >> 32)); return put32(p, (uint32_t)v);
}

/* (IE, length) of the template: src, dst, first, last, bytes, packets,
 * input, output, sport, dport, proto, tcp flags, tos. */
static const uint16_t V9_FIELDS[13][2] = {{8, 4}, {12, 4}, {22, 4}, {21, 4}, {1, 4}, {2, 4},
    {10, 4}, {14, 4}, {7, 2}, {11, 2}, {4, 1}, {6, 1}, {5, 1}};
static const uint16_t IPFIX_FIELDS[13][2] = {{8, 4}, {12, 4}, {152, 8}, {153, 8}, {1, 8}, {2, 8},
    {10, 4}, {14, 4}, {7, 2}, {11, 2}, {4, 1}, {6, 1}, {5, 1}};
#define V9_RECORD 39
#define IPFIX_RECORD 55
#define TEMPLATE_ID 256

struct flow {
    uint32_t src, dst, first_ago_ms, last_ago_ms, bytes, packets;
    uint16_t sport, dport, input, output;
    uint8_t proto, flags, tos;
};

static uint32_t subscribers, sub_base;

static void random_flow(struct flow *f) {
    uint64_t a = rnd(), b = rnd();
    uint32_t sub = sub_base + (uint32_t)(a % subscribers);
    uint32_t remote = (93u << 24) | (184u << 16) | (uint32_t)((a >> 32) & 0xFFFF);
    int inbound = (b & 0xFF) < 179;          /* 70 % towards the subscriber */
    f->src = inbound ? remote : sub;
    f->dst = inbound ? sub : remote;
    f->bytes = 40 + (uint32_t)((b >> 8) % 1500000);
    f->packets = f->bytes / 1000 ? f->bytes / 1000 : 1;
    f->last_ago_ms = (uint32_t)((b >> 32) % 1000);
    f->first_ago_ms = f->last_ago_ms + (uint32_t)((a >> 48) % 5000);
    f->sport = (uint16_t)(rnd() >> 7);
    f->dport = inbound ? 443 : (uint16_t)(1024 + (b >> 52) % 60000);
    f->input = 1 + (b >> 60);
    f->output = 2;
    f->proto = (b >> 40) & 1 ? 6 : 17;
    f->flags = f->proto == 6 ? 0x1b : 0;
    f->tos = 0;
}

struct exporter {
    int fd;
    uint32_t sequence;        /* v5/IPFIX: flows sent before; v9: packets sent before */
    uint64_t packets;
};

int main(int argc, char **argv) {
    if (argc < 9) {
        fprintf(stderr, "usage: flowgen VERSION PORT FLOWS_PER_S SECONDS SUBSCRIBERS SUB_BASE "
                        "SOURCES SEED [TEMPLATE_EVERY]\n");
        return 2;
    }
    int version = atoi(argv[1]);
    int port = atoi(argv[2]);
    double rate = atof(argv[3]);
    double seconds = atof(argv[4]);
    subscribers = (uint32_t)strtoul(argv[5], NULL, 10);
    sub_base = (uint32_t)strtoul(argv[6], NULL, 10);
    char *sources = argv[7];
    rng_state = strtoull(argv[8], NULL, 10) * 0x9E3779B97F4A7C15ULL + 1;
    int template_every = argc > 9 ? atoi(argv[9]) : 20;
    if ((version != 5 && version != 9 && version != 10) || port <= 0 || rate <= 0
            || seconds <= 0 || seconds > 3600 || subscribers == 0 || template_every <= 0) {
        fprintf(stderr, "flowgen: bad arguments\n");
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    struct exporter exporters[MAX_SOURCES];
    int count = 0;
    struct sockaddr_in target = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &target.sin_addr);
    for (char *name = strtok(sources, ","); name && count < MAX_SOURCES; name = strtok(NULL, ",")) {
        struct sockaddr_in local = {.sin_family = AF_INET};
        if (inet_pton(AF_INET, name, &local.sin_addr) != 1) {
            fprintf(stderr, "flowgen: bad source %s\n", name);
            return 2;
        }
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        int size = 4 << 20;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        if (bind(fd, (struct sockaddr *)&local, sizeof local) < 0
                || connect(fd, (struct sockaddr *)&target, sizeof target) < 0) {
            perror("flowgen: bind/connect");
            return 1;
        }
        exporters[count++] = (struct exporter){.fd = fd};
    }
    if (!count) return 2;

    const uint16_t (*fields)[2] = version == 10 ? IPFIX_FIELDS : V9_FIELDS;
    int record = version == 10 ? IPFIX_RECORD : V9_RECORD;
    int per_packet = version == 5 ? 30 : (1400 - 40 - 4 * 13) / record;
    uint8_t template_set[4 + 4 + 13 * 4];
    {
        uint8_t *p = put16(template_set, version == 9 ? 0 : 2);
        p = put16(p, sizeof template_set);
        p = put16(p, TEMPLATE_ID);
        p = put16(p, 13);
        for (int i = 0; i < 13; i++) { p = put16(p, fields[i][0]); p = put16(p, fields[i][1]); }
    }

    static uint8_t buffers[BATCH][MAX_PACKET];
    struct iovec iov[BATCH];
    struct mmsghdr messages[BATCH];
    uint64_t packets = 0, flows = 0, bytes = 0, templates = 0;
    double started = now_s(CLOCK_MONOTONIC), deadline = started + seconds;
    uint32_t uptime_base = 3600000;   /* the exporter booted an hour before */
    int next = 0;
    while (!stopping) {
        double now = now_s(CLOCK_MONOTONIC);
        if (now >= deadline) break;
        double due = started + flows / rate;       /* pace: when this batch may go */
        if (due > now) {
            if (due > deadline) break;
            struct timespec wait = {(time_t)(due - now), (long)((due - now - (time_t)(due - now)) * 1e9)};
            nanosleep(&wait, NULL);
            continue;
        }
        double wall = now_s(CLOCK_REALTIME);
        uint32_t unix_secs = (uint32_t)wall;
        uint32_t unix_nsecs = (uint32_t)((wall - unix_secs) * 1e9);
        uint64_t wall_ms = (uint64_t)(wall * 1000);
        uint32_t uptime = uptime_base + (uint32_t)((now - started) * 1000);
        /* One batch of packets, each for the next exporter in turn; all of a
         * batch's packets for one exporter go in one sendmmsg, in order. */
        int lengths[BATCH], owners[BATCH];
        for (int k = 0; k < BATCH; k++) {
            struct exporter *e = &exporters[next];
            owners[k] = next;
            next = (next + 1) % count;
            uint8_t *packet = buffers[k], *p;
            int n = per_packet;
            struct flow f;
            if (version == 5) {
                p = put16(packet, 5); p = put16(p, n); p = put32(p, uptime);
                p = put32(p, unix_secs); p = put32(p, unix_nsecs); p = put32(p, e->sequence);
                *p++ = 0; *p++ = 0; p = put16(p, 0);
                for (int i = 0; i < n; i++) {
                    random_flow(&f);
                    p = put32(p, f.src); p = put32(p, f.dst); p = put32(p, 0);
                    p = put16(p, f.input); p = put16(p, f.output);
                    p = put32(p, f.packets); p = put32(p, f.bytes);
                    p = put32(p, uptime - f.first_ago_ms); p = put32(p, uptime - f.last_ago_ms);
                    p = put16(p, f.sport); p = put16(p, f.dport);
                    *p++ = 0; *p++ = f.flags; *p++ = f.proto; *p++ = f.tos;
                    p = put32(p, 0); p = put32(p, 0);          /* AS, masks, pad */
                    bytes += f.bytes;
                }
                e->sequence += n;
            } else {
                int with_template = e->packets % template_every == 0;
                templates += with_template;
                p = packet + (version == 9 ? 20 : 16);
                if (with_template) { memcpy(p, template_set, sizeof template_set); p += sizeof template_set; }
                uint8_t *set = p;
                p = put16(p, TEMPLATE_ID); p += 2;
                for (int i = 0; i < n; i++) {
                    random_flow(&f);
                    p = put32(p, f.src); p = put32(p, f.dst);
                    if (version == 9) {
                        p = put32(p, uptime - f.first_ago_ms); p = put32(p, uptime - f.last_ago_ms);
                        p = put32(p, f.bytes); p = put32(p, f.packets);
                    } else {
                        p = put64(p, wall_ms - f.first_ago_ms); p = put64(p, wall_ms - f.last_ago_ms);
                        p = put64(p, f.bytes); p = put64(p, f.packets);
                    }
                    p = put32(p, f.input); p = put32(p, f.output);
                    p = put16(p, f.sport); p = put16(p, f.dport);
                    *p++ = f.proto; *p++ = f.flags; *p++ = f.tos;
                    bytes += f.bytes;
                }
                put16(set + 2, (uint32_t)(p - set));
                if (version == 9) {
                    uint8_t *h = put16(packet, 9); h = put16(h, n + with_template);
                    h = put32(h, uptime); h = put32(h, unix_secs); h = put32(h, e->sequence);
                    put32(h, 1);                                   /* source id */
                    e->sequence += 1;
                } else {
                    uint8_t *h = put16(packet, 10); h = put16(h, (uint32_t)(p - packet));
                    h = put32(h, unix_secs); h = put32(h, e->sequence);
                    put32(h, 1);                                   /* observation domain */
                    e->sequence += n;
                }
            }
            e->packets++;
            flows += n;
            lengths[k] = (int)(p - packet);
        }
        /* Send, exporter by exporter, retrying what the kernel refuses. */
        for (int x = 0; x < count; x++) {
            int m = 0;
            for (int k = 0; k < BATCH; k++) {
                if (owners[k] != x) continue;
                iov[m] = (struct iovec){buffers[k], (size_t)lengths[k]};
                memset(&messages[m], 0, sizeof messages[m]);
                messages[m].msg_hdr.msg_iov = &iov[m];
                messages[m].msg_hdr.msg_iovlen = 1;
                m++;
            }
            int done = 0, tries = 0;
            while (done < m) {
                int sent = sendmmsg(exporters[x].fd, messages + done, m - done, 0);
                if (sent > 0) { done += sent; continue; }
                if (sent < 0 && errno != ENOBUFS && errno != EAGAIN && errno != EINTR
                        && errno != ECONNREFUSED) {
                    perror("flowgen: sendmmsg");
                    return 1;
                }
                if (++tries > 100000) { fprintf(stderr, "flowgen: the kernel refuses to send\n"); return 1; }
                usleep(50);
            }
            packets += m;
        }
    }
    double elapsed = now_s(CLOCK_MONOTONIC) - started;
    printf("%llu %llu %llu %.3f %llu\n", (unsigned long long)packets, (unsigned long long)flows,
           (unsigned long long)bytes, elapsed, (unsigned long long)templates);
    return 0;
}
