/* Paced UDP flood for benchmarks/chaos.py (compiled at run time when gcc is there).
 *
 * usage: flood dgram|raw SRC_IP SRC_PORT DST_IP DST_PORT RATE SECONDS FRAMES_FILE
 * FRAMES_FILE: frames, each a 32-bit little-endian length and that many bytes; for
 * "raw" each frame is a whole IPv4 packet (IPPROTO_RAW: the source is the frame's own,
 * spoofed), for "dgram" a UDP payload sent from SRC_IP:SRC_PORT. Frames are sent in a
 * cycle, paced to RATE per second, up to 256 per sendmmsg(2) call, never blocking: a
 * full send buffer drops the rest of a batch, counted as refused. Prints
 * "SENT REFUSED SECONDS".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { BATCH = 256, MAX_FRAMES = 65536 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: flood dgram|raw SRC_IP SRC_PORT DST_IP DST_PORT RATE "
                        "SECONDS FRAMES_FILE\n");
        return 2;
    }
    int raw = strcmp(argv[1], "raw") == 0;
    struct sockaddr_in src, dst;
    memset(&src, 0, sizeof src);
    memset(&dst, 0, sizeof dst);
    src.sin_family = dst.sin_family = AF_INET;
    if (inet_pton(AF_INET, argv[2], &src.sin_addr) != 1 ||
        inet_pton(AF_INET, argv[4], &dst.sin_addr) != 1) {
        fprintf(stderr, "flood: bad address\n");
        return 2;
    }
    src.sin_port = htons((uint16_t)atoi(argv[3]));
    dst.sin_port = htons((uint16_t)atoi(argv[5]));
    double rate = atof(argv[6]), secs = atof(argv[7]);
    FILE *f = fopen(argv[8], "rb");
    if (!f) { perror("flood: frames"); return 1; }
    static struct iovec iov[MAX_FRAMES];
    int n = 0;
    uint32_t len;
    while (n < MAX_FRAMES && fread(&len, 4, 1, f) == 1) {
        void *buf = malloc(len ? len : 1);
        if (!buf || fread(buf, 1, len, f) != len) { fprintf(stderr, "flood: short\n"); return 1; }
        iov[n].iov_base = buf;
        iov[n].iov_len = len;
        n++;
    }
    fclose(f);
    if (n == 0) { fprintf(stderr, "flood: no frames\n"); return 1; }
    int fd = raw ? socket(AF_INET, SOCK_RAW, IPPROTO_RAW) : socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) { perror("flood: socket"); return 1; }
    if (!raw && bind(fd, (struct sockaddr *)&src, sizeof src) != 0) {
        perror("flood: bind");
        return 1;
    }
    /* Twice the frames in a row: any window of up to n starting anywhere is contiguous. */
    struct mmsghdr *v = calloc(2 * (size_t)n, sizeof *v);
    if (!v) return 1;
    for (int i = 0; i < 2 * n; i++) {
        v[i].msg_hdr.msg_name = &dst;
        v[i].msg_hdr.msg_namelen = sizeof dst;
        v[i].msg_hdr.msg_iov = &iov[i % n];
        v[i].msg_hdr.msg_iovlen = 1;
    }
    long long tried = 0, sent = 0, refused = 0;
    double t0 = now(), el;
    while ((el = now() - t0) < secs) {
        long long due = (long long)(el * rate) - tried;
        if (due <= 0) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
            continue;
        }
        int c = due > BATCH ? BATCH : (int)due;
        if (c > n) c = n;
        int d = sendmmsg(fd, v + (tried % n), (unsigned)c, MSG_DONTWAIT);
        if (d < 0) d = 0;
        sent += d;
        refused += c - d;
        tried += c;
    }
    printf("%lld %lld %.3f\n", sent, refused, now() - t0);
    return 0;
}
