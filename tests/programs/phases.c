/* Three phases with exactly known amounts, a SIGUSR2 (a marker) after the
 * first two, and 300 ms of quiet around each marker, so that a window
 * dragged on a chart falls cleanly between them.
 *   early: keep_early keeps 100 x 1000 B; temp_early allocates and frees
 *          50 x 2000 B.
 *   [SIGUSR2 #1]
 *   middle: keep_mid keeps 30 x 3000 B; temp_mid allocates and frees
 *           40 x 500 B; 20 of keep_early's blocks are freed.
 *   [SIGUSR2 #2]
 *   late: keep_late keeps 7 x 7000 B; 10 of keep_mid's blocks are freed.
 * At exit: keep_early 80 (80,000 B), keep_mid 20 (60,000 B), keep_late 7
 * (49,000 B). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void *volatile sink;
static void *early[100], *mid[30], *late[7];

static void quiet(void) {
    struct timespec t = {0, 300 * 1000 * 1000};
    nanosleep(&t, 0);
}

static void ignore(int sig) { (void)sig; }

__attribute__((noinline)) void keep_early(void) {
    for (int i = 0; i < 100; i++) early[i] = memset(malloc(1000), 1, 8);
}
__attribute__((noinline)) void temp_early(void) {
    for (int i = 0; i < 50; i++) {
        sink = malloc(2000);
        free(sink);
    }
}
__attribute__((noinline)) void keep_mid(void) {
    for (int i = 0; i < 30; i++) mid[i] = memset(malloc(3000), 1, 8);
}
__attribute__((noinline)) void temp_mid(void) {
    for (int i = 0; i < 40; i++) {
        sink = malloc(500);
        free(sink);
    }
}
__attribute__((noinline)) void keep_late(void) {
    for (int i = 0; i < 7; i++) late[i] = memset(malloc(7000), 1, 8);
}

int main(void) {
    signal(SIGUSR2, ignore);
    quiet();
    keep_early();
    temp_early();
    quiet();
    raise(SIGUSR2);
    quiet();
    keep_mid();
    temp_mid();
    for (int i = 0; i < 20; i++) free(early[i]);
    quiet();
    raise(SIGUSR2);
    quiet();
    keep_late();
    for (int i = 0; i < 10; i++) free(mid[i]);
    quiet();
    sink = 0;
    return 0;
}
