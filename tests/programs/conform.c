/* A deterministic allocation mix for comparing against gperftools' own heap
 * profiler: several sites, varied sizes, interleaved frees, no realloc.
 * Usage: conform ROUNDS [SIGNAL_EVERY [wait]]: with SIGNAL_EVERY, the
 * program raises SIGUSR2 every that many rounds; with `wait`, it prints
 * "ready" there instead and waits for a SIGUSR2 from outside (`kill`). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 4096
static void *slots[SLOTS];
void *volatile sink;
static unsigned long seed = 12345;

static unsigned long next(void) {
    seed = seed * 6364136223846793005ul + 1442695040888963407ul;
    return seed >> 33;
}

__attribute__((noinline)) void *small_site(void) { void *p = malloc(16 + next() % 240); sink = p; return p; }
__attribute__((noinline)) void *medium_site(void) { void *p = malloc(1024 + next() % 8192); sink = p; return p; }
__attribute__((noinline)) void *large_site(void) { void *p = malloc(65536 + next() % 65536); sink = p; return p; }
__attribute__((noinline)) void *zeroed_site(void) { void *p = calloc(1 + next() % 64, 32); sink = p; return p; }
__attribute__((noinline)) void release(void *p) { free(p); sink = 0; }

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 50000;
    long signal_every = argc > 2 ? atol(argv[2]) : 0;
    int wait = argc > 3 && strcmp(argv[3], "wait") == 0;
    /* Blocked, so that a signal sent while it allocates waits for it. */
    sigset_t usr2, before;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    if (wait) sigprocmask(SIG_BLOCK, &usr2, &before);
    for (long i = 0; i < rounds; i++) {
        if (signal_every && i % signal_every == signal_every - 1) {
            if (wait) {
                printf("ready\n");
                fflush(stdout);
                sigsuspend(&before);
            } else {
                raise(SIGUSR2);
            }
        }
        unsigned long r = next();
        int slot = r % SLOTS;
        if (slots[slot]) release(slots[slot]);
        switch ((r >> 12) % 16) {
            case 0: slots[slot] = large_site(); break;
            case 1: case 2: case 3: slots[slot] = medium_site(); break;
            case 4: case 5: slots[slot] = zeroed_site(); break;
            default: slots[slot] = small_site(); break;
        }
    }
    /* Free three quarters at the end: a burst of frees with no allocation. */
    for (int s = 0; s < SLOTS; s++) {
        if (slots[s] && s % 4 != 0) { release(slots[s]); slots[s] = 0; }
    }
    return 0;
}
