/* A windowed UDP request/response load generator for the RADIUS benches.
 *
 *   udpload PORT WINDOW SECONDS SOURCES < requests
 *
 * stdin: the requests, each as a 2-byte big-endian length and the datagram;
 * request n carries RADIUS identifier n % 256 (the Python side builds them).
 * It sends them in order to 127.0.0.1:PORT from SOURCES sockets bound to
 * 127.0.0.1, 127.0.0.2, ... (a NAS fleet: the kernel spreads them over the
 * server's SO_REUSEPORT workers), never more than WINDOW unanswered and never
 * two requests with one identifier in flight on one socket. A reply is
 * matched by (socket, identifier); a request unanswered after 2 s is lost.
 * Stops when every request is answered or lost, or after SECONDS.
 *
 * stdout, one line: answered lost elapsed_s p50_s p99_s cpu_s (requests still
 * unanswered at the deadline are neither answered nor lost)
 *
 * Why C: the Python generator spent ~36 us of CPU per request, on a 2-core
 * box that also runs the server and PostgreSQL; this one spends a few.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SOCKETS 64
#define LOST_AFTER_S 2.0
#define BATCH 64

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: udpload PORT WINDOW SECONDS SOURCES < requests\n");
        return 2;
    }
    int port = atoi(argv[1]), window = atoi(argv[2]), sources = atoi(argv[4]);
    double seconds = atof(argv[3]);
    if (port <= 0 || window <= 0 || sources <= 0 || seconds <= 0) {
        fprintf(stderr, "udpload: PORT, WINDOW, SECONDS and SOURCES must be positive\n");
        return 2;
    }

    /* Read every request into one buffer. */
    size_t cap = 1 << 20, used = 0;
    unsigned char *data = malloc(cap);
    size_t got;
    while (data && (got = fread(data + used, 1, cap - used, stdin)) > 0) {
        used += got;
        if (used == cap) data = realloc(data, cap *= 2);
    }
    if (!data) { fprintf(stderr, "udpload: out of memory\n"); return 1; }
    size_t count = 0;
    for (size_t at = 0; at + 2 <= used; at += 2 + ((data[at] << 8) | data[at + 1])) count++;
    size_t *offset = malloc(count * sizeof *offset);
    uint16_t *length = malloc(count * sizeof *length);
    double *latency = malloc((count ? count : 1) * sizeof *latency);
    if (!offset || !length || !latency) { fprintf(stderr, "udpload: out of memory\n"); return 1; }
    for (size_t i = 0, at = 0; i < count; i++) {
        length[i] = (data[at] << 8) | data[at + 1];
        offset[i] = at + 2;
        at += 2 + length[i];
    }

    int sockets = (window + 255) / 256;
    if (sockets < sources) sockets = sources;
    if (sockets > MAX_SOCKETS) sockets = MAX_SOCKETS;
    if (window > sockets * 256) window = sockets * 256;
    int fd[MAX_SOCKETS];
    struct pollfd polled[MAX_SOCKETS];
    struct sockaddr_in server = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &server.sin_addr);
    for (int s = 0; s < sockets; s++) {
        fd[s] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        int size = 4 << 20;
        setsockopt(fd[s], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = 0};
        char address[32];
        snprintf(address, sizeof address, "127.0.0.%d", 1 + s % sources);
        inet_pton(AF_INET, address, &local.sin_addr);
        if (bind(fd[s], (struct sockaddr *)&local, sizeof local) != 0 ||
            connect(fd[s], (struct sockaddr *)&server, sizeof server) != 0) {
            perror("udpload: socket");
            return 1;
        }
        polled[s].fd = fd[s];
        polled[s].events = POLLIN;
    }

    /* sent_at[s][id] > 0: in flight since then. */
    static double sent_at[MAX_SOCKETS][256];
    size_t sent = 0, answered = 0, lost = 0, outstanding = 0;
    double started = now_s(), stop_at = started + seconds, last_sweep = started;
    unsigned char buffers[BATCH][4096];
    struct mmsghdr messages[BATCH];
    struct iovec vectors[BATCH];
    int next_socket = 0;

    while ((sent < count || outstanding) && now_s() < stop_at) {
        while (sent < count && outstanding < (size_t)window) {
            unsigned char identifier = data[offset[sent] + 1];
            int chosen = -1;
            for (int k = 0; k < sockets; k++) {
                int s = (next_socket + k) % sockets;
                if (sent_at[s][identifier] == 0) { chosen = s; break; }
            }
            if (chosen < 0) break;
            next_socket = (chosen + 1) % sockets;
            if (send(fd[chosen], data + offset[sent], length[sent], 0) < 0) {
                if (errno == EAGAIN || errno == ENOBUFS) break;
                perror("udpload: send");
                return 1;
            }
            sent_at[chosen][identifier] = now_s();
            sent++;
            outstanding++;
        }
        if (poll(polled, sockets, 50) < 0 && errno != EINTR) { perror("udpload: poll"); return 1; }
        for (int s = 0; s < sockets; s++) {
            if (!(polled[s].revents & POLLIN)) continue;
            for (;;) {
                for (int b = 0; b < BATCH; b++) {
                    vectors[b].iov_base = buffers[b];
                    vectors[b].iov_len = sizeof buffers[b];
                    memset(&messages[b].msg_hdr, 0, sizeof messages[b].msg_hdr);
                    messages[b].msg_hdr.msg_iov = &vectors[b];
                    messages[b].msg_hdr.msg_iovlen = 1;
                }
                int n = recvmmsg(fd[s], messages, BATCH, MSG_DONTWAIT, NULL);
                if (n <= 0) break;
                double at = now_s();
                for (int b = 0; b < n; b++) {
                    if (messages[b].msg_len < 20) continue;
                    unsigned char identifier = buffers[b][1];
                    double began = sent_at[s][identifier];
                    if (began == 0) continue;   /* late, already counted lost */
                    sent_at[s][identifier] = 0;
                    latency[answered++] = at - began;
                    outstanding--;
                }
                if (n < BATCH) break;
            }
        }
        double now = now_s();
        if (now - last_sweep > 0.5) {
            last_sweep = now;
            for (int s = 0; s < sockets; s++)
                for (int i = 0; i < 256; i++)
                    if (sent_at[s][i] != 0 && now - sent_at[s][i] > LOST_AFTER_S) {
                        sent_at[s][i] = 0;
                        lost++;
                        outstanding--;
                    }
        }
    }
    double elapsed = now_s() - started;
    qsort(latency, answered, sizeof *latency, by_value);
    double p50 = answered ? latency[answered / 2] : -1;
    double p99 = answered ? latency[(size_t)(answered * 0.99) < answered
                                    ? (size_t)(answered * 0.99) : answered - 1] : -1;
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    double cpu = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6
                 + usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
    printf("%zu %zu %.6f %.6f %.6f %.6f\n", answered, lost, elapsed, p50, p99, cpu);
    return 0;
}
