/*
 * aaa._fastauth: the Access-Request path for a subscriber whose Accept is
 * already known, in one call (aaa.fastpath holds the table it reads).
 *
 * accept(data, secret, logins, now, wall_now) -> reply bytes, or None
 *
 * It answers only the request the Python path (aaa.server.handle_auth)
 * would answer with the cached Accept: an Access-Request with exactly its
 * length, well-formed attributes, a valid Message-Authenticator, no
 * Proxy-State, a User-Name found in ``logins`` (bytes -> (password bytes,
 * reply attributes bytes, expires: a monotonic float, until: a time.time()
 * float)) while ``now`` < expires and ``wall_now`` < until,
 * and a User-Password (RFC 2865 §5.2) that decrypts to that password. The
 * reply is what aaa.packet.encode_reply builds for it: Access-Accept,
 * Message-Authenticator first (RFC 3579 §3.2), the attributes, the Response
 * Authenticator (RFC 2865 §3). Anything else returns None and the caller
 * takes the Python path, which decides, logs and counts as it always has.
 * It has no side effects: the caller keeps the duplicate cache and counters.
 *
 * accounting(data, secret) -> (reply, status, delay, session_id, username,
 *     calling, framed, octets_in, gigawords_in, octets_out, gigawords_out,
 *     packets_in, packets_out, session_time, cause, classes), or None
 *
 * The common Accounting-Request (aaa.server.handle_acct) in one call: a
 * Start, Stop or Interim-Update with exactly its length, well-formed
 * attributes, a valid Request Authenticator (RFC 2866 §3), no
 * Message-Authenticator or Proxy-State, every integer it reads 4 octets and
 * every text UTF-8. The fields are the first value of each attribute, as
 * aaa.packet.Packet.first gives them (texts decoded, Framed-IP-Address as
 * its octets, absent integers 0, an absent cause None, Class values a
 * tuple); aaa.accounting.parse_fields makes the record from them with
 * parse's checks. The reply is aaa.packet.encode_reply's Accounting-Response.
 * Anything else returns None and takes the Python path.
 *
 * MD5 is RFC 1321's algorithm written here (the per-request hashes are
 * short, and calling OpenSSL through hashlib cost more than the hashing);
 * md5() and hmac_md5() are exported so tests compare them with hashlib's.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdint.h>
#include <string.h>

/* -- MD5 (RFC 1321) ------------------------------------------------------ */

typedef struct {
    uint32_t h[4];
    uint64_t length;          /* octets absorbed */
    unsigned char block[64];
    size_t fill;
} md5_state;

static uint32_t md5_k[64];
static const unsigned char md5_shift[64] = {
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
    5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
};

static void md5_constants(void)
{
    /* RFC 1321 §3.4: T[i] = the integer part of 4294967296 * abs(sin(i)). */
    for (int i = 0; i < 64; i++)
        md5_k[i] = (uint32_t)floor(fabs(sin((double)(i + 1))) * 4294967296.0);
}

static inline uint32_t rotl(uint32_t x, unsigned n) { return (x << n) | (x >> (32 - n)); }

static void md5_compress(uint32_t h[4], const unsigned char *p)
{
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = (uint32_t)p[4 * i] | ((uint32_t)p[4 * i + 1] << 8)
             | ((uint32_t)p[4 * i + 2] << 16) | ((uint32_t)p[4 * i + 3] << 24);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g;
        if (i < 16) {
            f = (b & c) | (~b & d);
            g = i;
        } else if (i < 32) {
            f = (d & b) | (~d & c);
            g = (5 * i + 1) & 15;
        } else if (i < 48) {
            f = b ^ c ^ d;
            g = (3 * i + 5) & 15;
        } else {
            f = c ^ (b | ~d);
            g = (7 * i) & 15;
        }
        f += a + md5_k[i] + m[g];
        a = d;
        d = c;
        c = b;
        b += rotl(f, md5_shift[i]);
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
}

static void md5_init(md5_state *s)
{
    s->h[0] = 0x67452301u;
    s->h[1] = 0xefcdab89u;
    s->h[2] = 0x98badcfeu;
    s->h[3] = 0x10325476u;
    s->length = 0;
    s->fill = 0;
}

static void md5_update(md5_state *s, const unsigned char *p, size_t n)
{
    s->length += n;
    if (s->fill) {
        size_t take = 64 - s->fill < n ? 64 - s->fill : n;
        memcpy(s->block + s->fill, p, take);
        s->fill += take;
        p += take;
        n -= take;
        if (s->fill < 64)
            return;
        md5_compress(s->h, s->block);
        s->fill = 0;
    }
    while (n >= 64) {
        md5_compress(s->h, p);
        p += 64;
        n -= 64;
    }
    if (n) {
        memcpy(s->block, p, n);
        s->fill = n;
    }
}

static void md5_final(md5_state *s, unsigned char out[16])
{
    uint64_t bits = s->length * 8;
    static const unsigned char pad[64] = {0x80};
    size_t padding = s->fill < 56 ? 56 - s->fill : 120 - s->fill;
    unsigned char tail[8];
    for (int i = 0; i < 8; i++)
        tail[i] = (unsigned char)(bits >> (8 * i));
    md5_update(s, pad, padding);
    md5_update(s, tail, 8);
    for (int i = 0; i < 4; i++) {
        out[4 * i] = (unsigned char)s->h[i];
        out[4 * i + 1] = (unsigned char)(s->h[i] >> 8);
        out[4 * i + 2] = (unsigned char)(s->h[i] >> 16);
        out[4 * i + 3] = (unsigned char)(s->h[i] >> 24);
    }
}

/* -- HMAC-MD5 (RFC 2104) with the keyed states kept for the last secret -- */

typedef struct {
    md5_state inner, outer, secret;  /* after k^ipad, after k^opad, after the secret */
    unsigned char key[256];
    Py_ssize_t key_length;           /* -1: nothing kept */
} keyed_states;

static keyed_states keyed = {.key_length = -1};

static const keyed_states *keyed_for(const unsigned char *secret, Py_ssize_t length)
{
    /* The GIL is held by every caller: one kept secret needs no lock. */
    if (keyed.key_length == length && memcmp(keyed.key, secret, (size_t)length) == 0)
        return &keyed;
    static keyed_states scratch;
    keyed_states *k = length <= (Py_ssize_t)sizeof keyed.key ? &keyed : &scratch;
    unsigned char block[64] = {0}, pad[64];
    if (length > 64) {
        md5_state hashed;
        md5_init(&hashed);
        md5_update(&hashed, secret, (size_t)length);
        md5_final(&hashed, block);
    } else {
        memcpy(block, secret, (size_t)length);
    }
    for (int i = 0; i < 64; i++)
        pad[i] = block[i] ^ 0x36;
    md5_init(&k->inner);
    md5_update(&k->inner, pad, 64);
    for (int i = 0; i < 64; i++)
        pad[i] = block[i] ^ 0x5c;
    md5_init(&k->outer);
    md5_update(&k->outer, pad, 64);
    md5_init(&k->secret);
    md5_update(&k->secret, secret, (size_t)length);
    if (k == &keyed) {
        memcpy(keyed.key, secret, (size_t)length);
        keyed.key_length = length;
    } else {
        k->key_length = -1;
    }
    return k;
}

static void hmac_finish(const keyed_states *k, md5_state *inner, unsigned char out[16])
{
    unsigned char digest[16];
    md5_final(inner, digest);
    md5_state outer = k->outer;
    md5_update(&outer, digest, 16);
    md5_final(&outer, out);
}

static const unsigned char zero16[16];

static int same16(const unsigned char *a, const unsigned char *b)
{
    unsigned char diff = 0;
    for (int i = 0; i < 16; i++)
        diff |= a[i] ^ b[i];
    return diff == 0;
}

/* -- the request ---------------------------------------------------------- */

enum {
    ACCESS_REQUEST = 1, ACCESS_ACCEPT = 2,
    USER_NAME = 1, USER_PASSWORD = 2, VENDOR_SPECIFIC = 26, PROXY_STATE = 33,
    MESSAGE_AUTHENTICATOR = 80,
    HEADER = 20, MAX_LENGTH = 4096,
};

/* The request the compiled paths take: of ``code``, exactly as long as its
 * length field says (no padding), every attribute at least 2 octets and
 * inside it. The attribute walks after it need no bounds checks. */
static int well_formed(const unsigned char *raw, Py_ssize_t size, int code)
{
    if (size < HEADER || size > MAX_LENGTH || raw[0] != code
            || ((Py_ssize_t)raw[2] << 8 | raw[3]) != size)
        return 0;
    for (Py_ssize_t at = HEADER; at < size; at += raw[at + 1])
        if (at + 2 > size || raw[at + 1] < 2 || at + raw[at + 1] > size)
            return 0;
    return 1;
}

static PyObject *py_accept(PyObject *module, PyObject *args)
{
    Py_buffer data, secret;
    PyObject *logins;
    double now, wall_now;
    if (!PyArg_ParseTuple(args, "y*y*O!dd", &data, &secret, &PyDict_Type, &logins, &now,
                          &wall_now))
        return NULL;
    PyObject *result = NULL;
    const unsigned char *raw = data.buf;
    Py_ssize_t size = data.len;
    const unsigned char *name = NULL, *hidden = NULL;
    int name_length = 0, hidden_length = 0;
    Py_ssize_t mac_at = -1;

    if (!well_formed(raw, size, ACCESS_REQUEST))
        goto fallback;
    for (Py_ssize_t at = HEADER; at < size;) {
        int kind = raw[at], length = raw[at + 1];
        if (kind == USER_NAME && name == NULL) {
            name = raw + at + 2;
            name_length = length - 2;
        } else if (kind == USER_PASSWORD && hidden == NULL) {
            hidden = raw + at + 2;
            hidden_length = length - 2;
        } else if (kind == MESSAGE_AUTHENTICATOR) {
            if (length != 18)
                goto fallback;
            if (mac_at < 0)
                mac_at = at + 2;
        } else if (kind == PROXY_STATE) {
            goto fallback;
        }
        at += length;
    }
    if (mac_at < 0 || name == NULL || name_length == 0 || hidden == NULL
            || hidden_length % 16 || hidden_length > 128 || hidden_length == 0
            || memchr(name, 0, (size_t)name_length) != NULL)
        goto fallback;

    /* The table first: nothing after this runs Python code (keys are
     * bytes), so the keyed states below stay this call's. */
    PyObject *key = PyBytes_FromStringAndSize((const char *)name, name_length);
    if (key == NULL)
        goto done;
    PyObject *entry = PyDict_GetItemWithError(logins, key);   /* borrowed */
    Py_DECREF(key);
    if (entry == NULL) {
        if (PyErr_Occurred())
            goto done;
        goto fallback;
    }
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 4)
        goto fallback;
    PyObject *password = PyTuple_GET_ITEM(entry, 0);
    PyObject *attributes = PyTuple_GET_ITEM(entry, 1);
    PyObject *expires = PyTuple_GET_ITEM(entry, 2);
    PyObject *until = PyTuple_GET_ITEM(entry, 3);
    if (!PyBytes_CheckExact(password) || !PyBytes_CheckExact(attributes)
            || !PyFloat_CheckExact(expires) || !(now < PyFloat_AS_DOUBLE(expires))
            || !PyFloat_CheckExact(until) || !(wall_now < PyFloat_AS_DOUBLE(until)))
        goto fallback;

    const keyed_states *k = keyed_for(secret.buf, secret.len);
    /* RFC 3579 §3.2: HMAC-MD5 over the packet with its value zeroed. */
    unsigned char mac[16];
    md5_state inner = k->inner;
    md5_update(&inner, raw, (size_t)mac_at);
    md5_update(&inner, zero16, 16);
    md5_update(&inner, raw + mac_at + 16, (size_t)(size - mac_at - 16));
    hmac_finish(k, &inner, mac);
    if (!same16(mac, raw + mac_at))
        goto fallback;

    /* RFC 2865 §5.2: b(i) = MD5(S + c(i-1)), c(0) the Request Authenticator;
     * the plain text is compared without its zero padding. */
    unsigned char plain[128];
    const unsigned char *previous = raw + 4;
    for (int at = 0; at < hidden_length; at += 16) {
        unsigned char stream[16];
        md5_state block = k->secret;
        md5_update(&block, previous, 16);
        md5_final(&block, stream);
        for (int i = 0; i < 16; i++)
            plain[at + i] = hidden[at + i] ^ stream[i];
        previous = hidden + at;
    }
    int plain_length = hidden_length;
    while (plain_length > 0 && plain[plain_length - 1] == 0)
        plain_length--;
    Py_ssize_t stored_length = PyBytes_GET_SIZE(password);
    const unsigned char *stored = (const unsigned char *)PyBytes_AS_STRING(password);
    if (stored_length != plain_length)
        goto fallback;
    unsigned char diff = 0;
    for (int i = 0; i < plain_length; i++)
        diff |= plain[i] ^ stored[i];
    if (diff)
        goto fallback;

    /* The Accept: Message-Authenticator first, then the attributes. */
    Py_ssize_t tail = PyBytes_GET_SIZE(attributes);
    Py_ssize_t length = HEADER + 18 + tail;
    if (length > MAX_LENGTH)
        goto fallback;
    result = PyBytes_FromStringAndSize(NULL, length);
    if (result == NULL)
        goto done;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    out[0] = ACCESS_ACCEPT;
    out[1] = raw[1];
    out[2] = (unsigned char)(length >> 8);
    out[3] = (unsigned char)length;
    memcpy(out + 4, raw + 4, 16);                 /* the request's, for now */
    out[HEADER] = MESSAGE_AUTHENTICATOR;
    out[HEADER + 1] = 18;
    memset(out + HEADER + 2, 0, 16);
    memcpy(out + HEADER + 18, PyBytes_AS_STRING(attributes), (size_t)tail);
    inner = k->inner;
    md5_update(&inner, out, (size_t)length);
    hmac_finish(k, &inner, out + HEADER + 2);
    md5_state response;
    md5_init(&response);
    md5_update(&response, out, (size_t)length);
    md5_update(&response, secret.buf, (size_t)secret.len);
    md5_final(&response, out + 4);
    goto done;

fallback:
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&secret);
    return result;
}

/* -- accounting: the common Accounting-Request, its fields and its reply ---- */

enum {
    ACCOUNTING_REQUEST = 4, ACCOUNTING_RESPONSE = 5, FRAMED_IP_ADDRESS = 8, CLASS = 25,
    CALLING_STATION_ID = 31, ACCT_STATUS_TYPE = 40, ACCT_DELAY_TIME = 41,
    ACCT_INPUT_OCTETS = 42, ACCT_OUTPUT_OCTETS = 43, ACCT_SESSION_ID = 44,
    ACCT_SESSION_TIME = 46, ACCT_INPUT_PACKETS = 47, ACCT_OUTPUT_PACKETS = 48,
    ACCT_TERMINATE_CAUSE = 49, ACCT_INPUT_GIGAWORDS = 52, ACCT_OUTPUT_GIGAWORDS = 53,
};

/* The attributes accounting() reads: their first value (offset of the
 * attribute header, 0 = absent), as aaa.packet.Packet.first gives it. */
static const unsigned char acct_kinds[] = {
    ACCT_STATUS_TYPE, ACCT_DELAY_TIME, ACCT_SESSION_ID, USER_NAME, CALLING_STATION_ID,
    FRAMED_IP_ADDRESS, ACCT_INPUT_OCTETS, ACCT_INPUT_GIGAWORDS, ACCT_OUTPUT_OCTETS,
    ACCT_OUTPUT_GIGAWORDS, ACCT_INPUT_PACKETS, ACCT_OUTPUT_PACKETS, ACCT_SESSION_TIME,
    ACCT_TERMINATE_CAUSE,
};
enum { N_ACCT = sizeof acct_kinds };

/* A 4-octet integer value into *out (0 if absent); -1 if another length. */
static int acct_number(const unsigned char *raw, Py_ssize_t at, unsigned long *out)
{
    if (at == 0) {
        *out = 0;
        return 0;
    }
    if (raw[at + 1] != 6)
        return -1;
    const unsigned char *v = raw + at + 2;
    *out = (unsigned long)v[0] << 24 | (unsigned long)v[1] << 16 | (unsigned long)v[2] << 8 | v[3];
    return 0;
}

/* A text value as str (None if absent); NULL with no error set if it is
 * not valid UTF-8 (the Python path decodes with "replace"). */
static PyObject *acct_text(const unsigned char *raw, Py_ssize_t at)
{
    if (at == 0)
        return Py_NewRef(Py_None);
    PyObject *text = PyUnicode_DecodeUTF8((const char *)raw + at + 2, raw[at + 1] - 2, NULL);
    if (text == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
        PyErr_Clear();
    return text;
}

static PyObject *py_accounting(PyObject *module, PyObject *args)
{
    /* accounting(data, secret) -> (reply, status, delay, session_id, username,
     * calling, framed, octets_in, gigawords_in, octets_out, gigawords_out,
     * packets_in, packets_out, session_time, cause, classes) or None. */
    Py_buffer data, secret;
    if (!PyArg_ParseTuple(args, "y*y*", &data, &secret))
        return NULL;
    PyObject *result = NULL, *texts[3] = {NULL, NULL, NULL}, *classes = NULL;
    const unsigned char *raw = data.buf;
    Py_ssize_t size = data.len, first[N_ACCT] = {0};
    int n_classes = 0;

    if (!well_formed(raw, size, ACCOUNTING_REQUEST))
        goto fallback;
    for (Py_ssize_t at = HEADER; at < size;) {
        int kind = raw[at], length = raw[at + 1];
        if (kind == MESSAGE_AUTHENTICATOR || kind == PROXY_STATE)
            goto fallback;
        if (kind == CLASS)
            n_classes++;
        for (int i = 0; i < N_ACCT; i++)
            if (acct_kinds[i] == kind) {
                if (first[i] == 0)
                    first[i] = at;
                break;
            }
        at += length;
    }

    /* RFC 2866 §3: MD5(Code + Identifier + Length + 16 zero octets +
     * Attributes + Secret). */
    unsigned char digest[16];
    md5_state hash;
    md5_init(&hash);
    md5_update(&hash, raw, 4);
    md5_update(&hash, zero16, 16);
    md5_update(&hash, raw + HEADER, (size_t)(size - HEADER));
    md5_update(&hash, secret.buf, (size_t)secret.len);
    md5_final(&hash, digest);
    if (!same16(digest, raw + 4))
        goto fallback;

    unsigned long numbers[N_ACCT];
    for (int i = 0; i < N_ACCT; i++) {
        if (i >= 2 && i <= 5)           /* the texts and Framed-IP-Address */
            continue;
        if (acct_number(raw, first[i], &numbers[i]) < 0)
            goto fallback;
    }
    /* Start, Stop and Interim-Update; the rest take the Python path. */
    if (first[0] == 0 || numbers[0] < 1 || numbers[0] > 3)
        goto fallback;
    for (int i = 0; i < 3; i++) {
        texts[i] = acct_text(raw, first[2 + i]);
        if (texts[i] == NULL)
            goto done_or_fallback;
    }
    if (n_classes) {
        classes = PyTuple_New(n_classes);
        if (classes == NULL)
            goto done;
        int n = 0;
        for (Py_ssize_t at = HEADER; at < size; at += raw[at + 1])
            if (raw[at] == CLASS) {
                PyObject *value = PyBytes_FromStringAndSize((const char *)raw + at + 2,
                                                            raw[at + 1] - 2);
                if (value == NULL)
                    goto done;
                PyTuple_SET_ITEM(classes, n++, value);
            }
    } else {
        classes = Py_NewRef(Py_None);
    }

    /* The Accounting-Response aaa.packet.encode_reply builds: no attributes. */
    unsigned char reply[HEADER];
    reply[0] = ACCOUNTING_RESPONSE;
    reply[1] = raw[1];
    reply[2] = 0;
    reply[3] = HEADER;
    md5_init(&hash);
    md5_update(&hash, reply, 4);
    md5_update(&hash, raw + 4, 16);
    md5_update(&hash, secret.buf, (size_t)secret.len);
    md5_final(&hash, reply + 4);

    Py_ssize_t framed = first[5];
    PyObject *cause = first[13] ? PyLong_FromUnsignedLong(numbers[13]) : Py_NewRef(Py_None);
    if (cause == NULL)
        goto done;
    result = Py_BuildValue(
        "(y#kkNNNNkkkkkkkNN)", reply, (Py_ssize_t)HEADER, numbers[0], numbers[1],
        texts[0], texts[1], texts[2],
        framed ? PyBytes_FromStringAndSize((const char *)raw + framed + 2, raw[framed + 1] - 2)
               : Py_NewRef(Py_None),
        numbers[6], numbers[7], numbers[8], numbers[9], numbers[10], numbers[11], numbers[12],
        cause, classes);
    /* Py_BuildValue took (N) the texts, the cause and the classes, even on failure. */
    texts[0] = texts[1] = texts[2] = classes = NULL;
    goto done;

done_or_fallback:
    if (PyErr_Occurred())
        goto done;
fallback:
    result = Py_NewRef(Py_None);
done:
    for (int i = 0; i < 3; i++)
        Py_XDECREF(texts[i]);
    Py_XDECREF(classes);
    PyBuffer_Release(&data);
    PyBuffer_Release(&secret);
    return result;
}

/* -- decode: aaa.packet.decode's walk, its checks and its reasons ----------- */

static PyObject *malformed(const char *format, ...)
{
    va_list arguments;
    va_start(arguments, format);
    PyErr_FormatV(PyExc_ValueError, format, arguments);
    va_end(arguments);
    return NULL;
}

static int add_value(PyObject *into, PyObject *key, const unsigned char *value, Py_ssize_t size)
{
    PyObject *item = PyBytes_FromStringAndSize((const char *)value, size);
    if (item == NULL)
        return -1;
    PyObject *values = PyDict_GetItemWithError(into, key);   /* borrowed */
    int failed;
    if (values != NULL) {
        failed = PyList_Append(values, item);
    } else if (PyErr_Occurred()) {
        failed = -1;
    } else {
        values = PyList_New(1);
        if (values == NULL) {
            Py_DECREF(item);
            return -1;
        }
        Py_INCREF(item);
        PyList_SET_ITEM(values, 0, item);
        failed = PyDict_SetItem(into, key, values);
        Py_DECREF(values);
    }
    Py_DECREF(item);
    return failed;
}

static int split_vendor(const unsigned char *value, Py_ssize_t size, PyObject *into)
{
    /* A VSA whose inner layout is not RFC 2865's (1-octet type and length)
     * is kept only as a raw attribute 26: checked whole before any is kept. */
    if (size < 6)
        return 0;
    for (Py_ssize_t at = 4; at < size;) {
        if (at + 2 > size || value[at + 1] < 2 || at + value[at + 1] > size)
            return 0;
        at += value[at + 1];
    }
    unsigned long vendor = (unsigned long)value[0] << 24 | (unsigned long)value[1] << 16
                         | (unsigned long)value[2] << 8 | value[3];
    for (Py_ssize_t at = 4; at < size; at += value[at + 1]) {
        PyObject *key = Py_BuildValue("(ki)", vendor, (int)value[at]);
        if (key == NULL)
            return -1;
        int failed = add_value(into, key, value + at + 2, value[at + 1] - 2);
        Py_DECREF(key);
        if (failed)
            return -1;
    }
    return 0;
}

static PyObject *py_decode(PyObject *module, PyObject *args)
{
    /* decode(data) -> (code, identifier, authenticator, raw, attributes,
     * vendor, message_authenticator_at); ValueError(reason) if malformed. */
    PyObject *data;
    if (!PyArg_ParseTuple(args, "O!", &PyBytes_Type, &data))
        return NULL;
    const unsigned char *raw = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t received = PyBytes_GET_SIZE(data);
    if (received < HEADER)
        return malformed("packet of %zd octets is shorter than a header", received);
    Py_ssize_t length = (Py_ssize_t)raw[2] << 8 | raw[3];
    if (length < HEADER || length > MAX_LENGTH)
        return malformed("length field %zd is outside 20-4096", length);
    if (length > received)
        return malformed("length field %zd exceeds the %zd octets received", length, received);
    PyObject *attributes = PyDict_New(), *vendor = PyDict_New(), *whole = NULL;
    PyObject *mac = Py_NewRef(Py_None);
    if (attributes == NULL || vendor == NULL)
        goto failed;
    for (Py_ssize_t at = HEADER; at < length;) {
        if (at > length - 2) {
            malformed("truncated attribute header");
            goto failed;
        }
        int kind = raw[at];
        Py_ssize_t end = at + raw[at + 1];
        if (end < at + 2 || end > length) {
            malformed("attribute %d has bad length %d", kind, (int)raw[at + 1]);
            goto failed;
        }
        if (kind == VENDOR_SPECIFIC) {
            if (split_vendor(raw + at + 2, end - at - 2, vendor) < 0)
                goto failed;
        } else if (kind == MESSAGE_AUTHENTICATOR) {
            if (end - at != 18) {
                malformed("Message-Authenticator must be 16 octets");
                goto failed;
            }
            if (mac == Py_None) {
                Py_SETREF(mac, PyLong_FromSsize_t(at + 2));
                if (mac == NULL)
                    goto failed;
            }
        }
        PyObject *key = PyLong_FromLong(kind);
        if (key == NULL)
            goto failed;
        int failed = add_value(attributes, key, raw + at + 2, end - at - 2);
        Py_DECREF(key);
        if (failed)
            goto failed;
        at = end;
    }
    if (length < received) {
        whole = PyBytes_FromStringAndSize((const char *)raw, length);
        if (whole == NULL)
            goto failed;
    } else {
        whole = Py_NewRef(data);
    }
    return Py_BuildValue("(iiy#NNNN)", raw[0], raw[1], raw + 4, (Py_ssize_t)16, whole,
                         attributes, vendor, mac);
failed:
    Py_XDECREF(attributes);
    Py_XDECREF(vendor);
    Py_XDECREF(mac);
    return NULL;
}

/* -- datagrams in batches (recvmmsg / sendmmsg, IPv4) ----------------------- */

enum { BATCH = 16, DATAGRAM = 4096 };

static PyObject *address_of(const struct sockaddr_in *address, PyObject **host_cache,
                            uint32_t *host_cached)
{
    /* A NAS sends from one address: its text is made once per batch run. */
    if (*host_cache == NULL || *host_cached != address->sin_addr.s_addr) {
        char text[INET_ADDRSTRLEN];
        if (inet_ntop(AF_INET, &address->sin_addr, text, sizeof text) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        PyObject *host = PyUnicode_FromString(text);
        if (host == NULL)
            return NULL;
        Py_XSETREF(*host_cache, host);
        *host_cached = address->sin_addr.s_addr;
    }
    return Py_BuildValue("(Oi)", *host_cache, (int)ntohs(address->sin_port));
}

static PyObject *py_receive(PyObject *module, PyObject *args)
{
    int fd;
    if (!PyArg_ParseTuple(args, "i", &fd))
        return NULL;
    unsigned char buffers[BATCH][DATAGRAM];
    struct sockaddr_in addresses[BATCH];
    struct iovec vectors[BATCH];
    struct mmsghdr messages[BATCH];
    memset(messages, 0, sizeof messages);
    for (int i = 0; i < BATCH; i++) {
        vectors[i].iov_base = buffers[i];
        vectors[i].iov_len = DATAGRAM;
        messages[i].msg_hdr.msg_name = &addresses[i];
        messages[i].msg_hdr.msg_namelen = sizeof addresses[i];
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
    }
    int count;
    Py_BEGIN_ALLOW_THREADS
    /* Waits for the first datagram only, then takes what is queued. */
    count = recvmmsg(fd, messages, BATCH, MSG_WAITFORONE, NULL);
    Py_END_ALLOW_THREADS
    if (count < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    PyObject *batch = PyList_New(0);
    PyObject *host = NULL;
    uint32_t host_address = 0;
    if (batch == NULL)
        return NULL;
    for (int i = 0; i < count; i++) {
        if (messages[i].msg_hdr.msg_namelen != sizeof(struct sockaddr_in)
                || addresses[i].sin_family != AF_INET)
            continue;   /* not an IPv4 peer: the socket is bound to IPv4 */
        PyObject *source = address_of(&addresses[i], &host, &host_address);
        if (source == NULL)
            goto failed;
        PyObject *item = Py_BuildValue("(y#N)", buffers[i], (Py_ssize_t)messages[i].msg_len,
                                       source);
        if (item == NULL || PyList_Append(batch, item) < 0) {
            Py_XDECREF(item);
            goto failed;
        }
        Py_DECREF(item);
    }
    Py_XDECREF(host);
    return batch;
failed:
    Py_XDECREF(host);
    Py_DECREF(batch);
    return NULL;
}

static int add_failure(PyObject *failures, Py_ssize_t index, int error)
{
    PyObject *failure = Py_BuildValue("(ni)", index, error);
    if (failure == NULL)
        return -1;
    int failed = PyList_Append(failures, failure);
    Py_DECREF(failure);
    return failed;
}

static PyObject *py_send(PyObject *module, PyObject *args)
{
    /* send(fd, [(datagram, (host, port)), ...]) -> [(index, errno), ...]
     * for the datagrams not sent: refused by the kernel, or not a bytes
     * datagram for an IPv4 (host, port) (EINVAL). Never raises for one. */
    int fd;
    PyObject *replies;
    if (!PyArg_ParseTuple(args, "iO!", &fd, &PyList_Type, &replies))
        return NULL;
    Py_ssize_t total = PyList_GET_SIZE(replies);
    PyObject *failures = PyList_New(0);
    if (failures == NULL)
        return NULL;
    for (Py_ssize_t start = 0; start < total;) {
        struct sockaddr_in addresses[BATCH];
        struct iovec vectors[BATCH];
        struct mmsghdr messages[BATCH];
        Py_ssize_t indexes[BATCH];
        int count = 0;
        memset(messages, 0, sizeof messages);
        for (; start < total && count < BATCH; start++) {
            PyObject *item = PyList_GET_ITEM(replies, start);
            PyObject *datagram, *address, *host;
            long port;
            struct sockaddr_in *to = &addresses[count];
            memset(to, 0, sizeof *to);
            to->sin_family = AF_INET;
            const char *text;
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2
                    || !PyBytes_Check(datagram = PyTuple_GET_ITEM(item, 0))
                    || !PyTuple_Check(address = PyTuple_GET_ITEM(item, 1))
                    || PyTuple_GET_SIZE(address) != 2
                    || !PyUnicode_Check(host = PyTuple_GET_ITEM(address, 0))
                    || !PyLong_Check(PyTuple_GET_ITEM(address, 1))
                    || (port = PyLong_AsLong(PyTuple_GET_ITEM(address, 1))) < 0 || port > 65535
                    || (text = PyUnicode_AsUTF8(host)) == NULL
                    || inet_pton(AF_INET, text, &to->sin_addr) != 1) {
                PyErr_Clear();
                if (add_failure(failures, start, EINVAL) < 0)
                    goto failed;
                continue;
            }
            to->sin_port = htons((uint16_t)port);
            vectors[count].iov_base = PyBytes_AS_STRING(datagram);
            vectors[count].iov_len = (size_t)PyBytes_GET_SIZE(datagram);
            messages[count].msg_hdr.msg_name = to;
            messages[count].msg_hdr.msg_namelen = sizeof *to;
            messages[count].msg_hdr.msg_iov = &vectors[count];
            messages[count].msg_hdr.msg_iovlen = 1;
            indexes[count++] = start;
        }
        int done = 0;
        while (done < count) {
            int sent, error = 0;
            /* The datagrams stay referenced by ``replies`` while the GIL is
             * released: the caller holds the list. */
            Py_BEGIN_ALLOW_THREADS
            sent = sendmmsg(fd, messages + done, (unsigned)(count - done), 0);
            if (sent < 0)
                error = errno;
            Py_END_ALLOW_THREADS
            if (sent < 0) {
                if (error == EINTR)
                    continue;
                if (add_failure(failures, indexes[done], error) < 0)
                    goto failed;
                done += 1;      /* that one is lost, as a failed sendto's is */
            } else {
                done += sent;
            }
        }
    }
    return failures;
failed:
    Py_DECREF(failures);
    return NULL;
}

/* -- the primitives, for the tests ---------------------------------------- */

static PyObject *py_md5(PyObject *module, PyObject *args)
{
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data))
        return NULL;
    md5_state s;
    unsigned char out[16];
    md5_init(&s);
    md5_update(&s, data.buf, (size_t)data.len);
    md5_final(&s, out);
    PyBuffer_Release(&data);
    return PyBytes_FromStringAndSize((const char *)out, 16);
}

static PyObject *py_hmac_md5(PyObject *module, PyObject *args)
{
    Py_buffer key, data;
    if (!PyArg_ParseTuple(args, "y*y*", &key, &data))
        return NULL;
    const keyed_states *k = keyed_for(key.buf, key.len);
    md5_state inner = k->inner;
    unsigned char out[16];
    md5_update(&inner, data.buf, (size_t)data.len);
    hmac_finish(k, &inner, out);
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return PyBytes_FromStringAndSize((const char *)out, 16);
}

static PyMethodDef methods[] = {
    {"accept", py_accept, METH_VARARGS,
     "accept(data, secret, logins, now, wall_now) -> the cached Accept's reply, or None"},
    {"accounting", py_accounting, METH_VARARGS,
     "accounting(data, secret) -> (reply, status, ...) of a plain Start, Stop or Interim, or None"},
    {"decode", py_decode, METH_VARARGS,
     "decode(data) -> aaa.packet.Packet's fields; ValueError(reason) if malformed"},
    {"receive", py_receive, METH_VARARGS,
     "receive(fd) -> [(datagram, (host, port)), ...]: waits for one, takes up to 16 (IPv4)"},
    {"send", py_send, METH_VARARGS,
     "send(fd, [(datagram, (host, port)), ...]) -> [(index, errno), ...] refused"},
    {"md5", py_md5, METH_VARARGS, "md5(data) -> digest (RFC 1321)"},
    {"hmac_md5", py_hmac_md5, METH_VARARGS, "hmac_md5(key, data) -> digest (RFC 2104)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "aaa._fastauth",
    "The cached-Accept Access-Request path in C (see aaa.fastpath).", -1, methods,
};

PyMODINIT_FUNC PyInit__fastauth(void)
{
    md5_constants();
    return PyModule_Create(&module);
}
