/* A server-like process that never exits on its own. It installs its own
 * SIGUSR2 handler (counting signals), and works in phases: phase k grows a
 * cache by 1 MiB (256 blocks of 4 KiB, grow_cache), serves short requests
 * (handle_request) and, in phase 2, builds an 8 MiB report it frees again
 * (build_report: the peak). After each phase it prints "ready K" and waits
 * for SIGUSR2, then prints "got N" (N = signals its handler has seen). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t hits;
static void *cache[4096];
static int ncache;
void *volatile sink;

static void on_usr2(int sig) {
    (void)sig;
    hits++;
}

__attribute__((noinline)) void grow_cache(void) {
    for (int i = 0; i < 256; i++) cache[ncache++] = malloc(4096);
    sink = cache[0];
}

__attribute__((noinline)) void handle_request(int n) {
    char *buf = malloc(100 + n % 900);
    sink = buf;
    free(buf);
}

__attribute__((noinline)) void build_report(void) {
    char *report = malloc(8 << 20);
    memset(report, 1, 8 << 20);
    sink = report;
    free(report);
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR2, &sa, 0);
    for (int phase = 1;; phase++) {
        grow_cache();
        for (int r = 0; r < 1000; r++) handle_request(r);
        if (phase == 2) build_report();
        printf("ready %d\n", phase);
        fflush(stdout);
        int seen = hits;
        while (hits == seen) usleep(1000);
        printf("got %d\n", (int)hits);
        fflush(stdout);
    }
}
