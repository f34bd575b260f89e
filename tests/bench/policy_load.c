/*
 * policy_load: load generator for a Postfix policy server (tests/bench/bench_policyd.py).
 *
 * Usage: policy_load HOST PORT CONNECTIONS SECONDS RATE REQUESTS_FILE
 *
 * REQUESTS_FILE holds policy requests, each ending with an empty line. Each connection
 * sends one request at a time, as Postfix's smtpd does, and waits for the answer (a block
 * ending with an empty line). RATE 0: closed loop (the next request as soon as the answer
 * is in). RATE > 0: each connection sends every CONNECTIONS / RATE seconds on a fixed
 * schedule; a request the server made late (the previous answer came after it was due) is
 * sent at once and its latency counts from when it was due.
 *
 * Prints: COUNT ELAPSED_SECONDS P50_MICROSECONDS P99_MICROSECONDS
 *
 * Written in C so that the load takes as little as possible of the cores it shares with
 * the server (as Postfix's own smtpd processes are C).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int by_value(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: policy_load HOST PORT CONNECTIONS SECONDS RATE FILE\n");
        return 2;
    }
    int n = atoi(argv[3]);
    double seconds = atof(argv[4]), rate = atof(argv[5]);
    FILE *f = fopen(argv[6], "rb");
    if (!f || n < 1) { perror("requests"); return 2; }
    struct stat st;
    fstat(fileno(f), &st);
    char *text = malloc(st.st_size + 1);
    if (fread(text, 1, st.st_size, f) != (size_t)st.st_size) { perror("read"); return 2; }
    fclose(f);
    size_t count = 0, cap = 1024;
    char **req = malloc(cap * sizeof *req);
    size_t *len = malloc(cap * sizeof *len);
    for (char *p = text, *end; (end = memmem(p, text + st.st_size - p, "\n\n", 2)); p = end + 2) {
        if (count == cap) {
            cap *= 2;
            req = realloc(req, cap * sizeof *req);
            len = realloc(len, cap * sizeof *len);
        }
        req[count] = p;
        len[count++] = end + 2 - p;
    }
    if (!count) { fprintf(stderr, "no requests\n"); return 2; }

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &addr.sin_addr);
    struct pollfd *fds = calloc(n, sizeof *fds);
    double *due = calloc(n, sizeof *due), *start = calloc(n, sizeof *start);
    int *busy = calloc(n, sizeof *busy);
    size_t *next = calloc(n, sizeof *next), *got = calloc(n, sizeof *got);
    char (*buf)[4096] = calloc(n, sizeof *buf);
    for (int i = 0; i < n; i++) {
        int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
            perror("connect");
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fds[i] = (struct pollfd){.fd = fd, .events = POLLIN};
        next[i] = (size_t)rand() % count;
    }
    /* Warm-up, not measured: one answered request on every connection, so that the server
     * has accepted them all (Postfix keeps its policy connections open for minutes: the
     * steady state is what counts, not the accept queue of a cold start). */
    for (int i = 0; i < n; i++) {
        size_t k = next[i]++ % count;
        if (send(fds[i].fd, req[k], len[k], 0) != (ssize_t)len[k]) { perror("send"); return 1; }
    }
    for (int answered = 0; answered < n;) {
        if (poll(fds, n, 10000) <= 0) { fprintf(stderr, "warm-up: no answer\n"); return 1; }
        for (int i = 0; i < n; i++) {
            if (!(fds[i].revents & POLLIN)) continue;
            ssize_t r = recv(fds[i].fd, buf[i] + got[i], sizeof buf[i] - got[i], 0);
            if (r <= 0) { fprintf(stderr, "connection %d closed\n", i); return 1; }
            got[i] += r;
            if (got[i] >= 2 && !memcmp(buf[i] + got[i] - 2, "\n\n", 2)) {
                got[i] = 0;
                answered++;
            }
        }
    }
    double interval = rate > 0 ? n / rate : 0, t0 = now(), deadline = t0 + seconds;
    for (int i = 0; i < n; i++) due[i] = t0 + (rate > 0 ? i * interval / n : 0);
    size_t lat_cap = 1 << 20, lat_n = 0;
    float *lat = malloc(lat_cap * sizeof *lat);
#define SEND(i, from)                                                          \
    do {                                                                       \
        size_t k = next[i]++ % count;                                          \
        if (send(fds[i].fd, req[k], len[k], 0) != (ssize_t)len[k]) {           \
            perror("send");                                                    \
            return 1;                                                          \
        }                                                                      \
        start[i] = (from);                                                     \
        busy[i] = 1;                                                           \
        got[i] = 0;                                                            \
    } while (0)
    if (rate <= 0)
        for (int i = 0; i < n; i++) SEND(i, now());
    for (;;) {
        double t = now();
        if (t >= deadline) break;
        double wait = 0.05;
        if (rate > 0) {
            for (int i = 0; i < n; i++) {
                if (busy[i]) continue;
                if (due[i] <= t) SEND(i, t);  /* late only by this loop's wake-up: from now */
                else if (due[i] - t < wait) wait = due[i] - t;
            }
        }
        struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
        if (ppoll(fds, n, &ts, NULL) < 0) { perror("ppoll"); return 1; }
        for (int i = 0; i < n; i++) {
            if (!(fds[i].revents & POLLIN)) continue;
            ssize_t r = recv(fds[i].fd, buf[i] + got[i], sizeof buf[i] - got[i], 0);
            if (r <= 0) { fprintf(stderr, "connection %d closed\n", i); return 1; }
            got[i] += r;
            if (got[i] < 2 || memcmp(buf[i] + got[i] - 2, "\n\n", 2)) continue;
            double done = now();
            if (lat_n == lat_cap) lat = realloc(lat, (lat_cap *= 2) * sizeof *lat);
            lat[lat_n++] = (float)((done - start[i]) * 1e6);
            busy[i] = 0;
            if (rate <= 0) {
                SEND(i, done);
            } else {
                due[i] += interval;
                if (due[i] <= done) SEND(i, due[i]);  /* the server made it late */
            }
        }
    }
    double elapsed = now() - t0;
    qsort(lat, lat_n, sizeof *lat, by_value);
    printf("%zu %.6f %.1f %.1f\n", lat_n, elapsed, lat_n ? lat[lat_n / 2] : 0.0,
           lat_n ? lat[(size_t)(lat_n * 0.99)] : 0.0);
    return 0;
}
