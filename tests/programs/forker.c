/* Forks while other threads allocate. The parent keeps 100 blocks from
 * parent_alloc before forking and 50 from parent_after after its children
 * end; each of CHILDREN children keeps 200 blocks from child_alloc and exits
 * normally. Usage: forker CHILDREN */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int stop;
static void *kept[400];
void *volatile sink;

__attribute__((noinline)) void parent_alloc(void) { for (int i = 0; i < 100; i++) kept[i] = malloc(128); sink = kept[0]; }
__attribute__((noinline)) void parent_after(void) { for (int i = 0; i < 50; i++) kept[100 + i] = malloc(256); sink = kept[100]; }
__attribute__((noinline)) void child_alloc(void) { for (int i = 0; i < 200; i++) kept[200 + i] = malloc(512); sink = kept[200]; }

static void *churn(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        void *p = malloc(64);
        sink = p;
        free(p);
    }
    return 0;
}

int main(int argc, char **argv) {
    int children = argc > 1 ? atoi(argv[1]) : 4;
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], 0, churn, 0);
    parent_alloc();
    for (int c = 0; c < children; c++) {
        pid_t pid = fork();
        if (pid == 0) {
            child_alloc();
            /* Half the children leave with _exit, which skips exit handlers. */
            if (c % 2) _exit(0);
            exit(0);
        }
        int status;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++) pthread_join(t[i], 0);
    parent_after();
    printf("parent %d\n", (int)getpid());
    return 0;
}
