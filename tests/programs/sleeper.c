/* Allocates 1000 blocks in before_sleep, says "ready" and sleeps, for tests
 * that kill it. With an argument "twice" it also reports and exits normally. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void *kept[1000];
void *volatile sink;

__attribute__((noinline)) void before_sleep(void) {
    for (int i = 0; i < 1000; i++) kept[i] = malloc(100);
    sink = kept[0];
}

int main(int argc, char **argv) {
    before_sleep();
    printf("ready\n");
    fflush(stdout);
    if (argc > 1) return 0;
    sleep(30);
    return 0;
}
