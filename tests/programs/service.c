/* A service that does not exit on its own. Two worker threads churn
 * (malloc/free pairs of varied sizes, a ring of 64 blocks kept) while the
 * main thread reads commands from stdin, answering each with "ok":
 *   grow N   keeps N more blocks of 1000 bytes, allocated in grow()
 *   mark     raises SIGUSR2 (a marker under the recorder)
 * At the end of input it stops the workers and exits normally, keeping what
 * grow() allocated. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_int stopping;
void *volatile sink;

__attribute__((noinline)) void *churn_block(size_t size) { return malloc(size); }

static void *worker(void *arg) {
    void *ring[64] = {0};
    unsigned i = (unsigned)(size_t)arg;
    while (!atomic_load(&stopping)) {
        for (int k = 0; k < 100; k++, i++) {
            void *p = churn_block(16 + i % 500);
            sink = p;
            free(ring[i % 64]);
            ring[i % 64] = p;
        }
        usleep(1000);
    }
    for (int k = 0; k < 64; k++) free(ring[k]);
    return NULL;
}

__attribute__((noinline)) void grow(int n) {
    for (int k = 0; k < n; k++) sink = malloc(1000);
}

static void on_usr2(int sig) { (void)sig; }

int main(void) {
    signal(SIGUSR2, on_usr2);
    pthread_t workers[2];
    for (size_t t = 0; t < 2; t++) pthread_create(&workers[t], NULL, worker, (void *)(t * 7919));
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        int n;
        if (sscanf(line, "grow %d", &n) == 1) grow(n);
        else if (strncmp(line, "mark", 4) == 0) raise(SIGUSR2);
        printf("ok\n");
        fflush(stdout);
    }
    atomic_store(&stopping, 1);
    for (int t = 0; t < 2; t++) pthread_join(workers[t], NULL);
    return 0;
}
