/* Allocates 300 blocks in before_crash, then: "segv" dereferences NULL,
 * "abort" calls abort(), "recover" installs its own SIGSEGV handler (after
 * checking that it sees the default disposition) and recovers from the
 * fault with siglongjmp. Usage: crasher segv|abort|recover */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *volatile sink;
static sigjmp_buf back;

__attribute__((noinline)) void before_crash(void) { for (int i = 0; i < 300; i++) sink = malloc(100); }

static void on_segv(int sig) { siglongjmp(back, sig); }

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "segv";
    before_crash();
    if (!strcmp(mode, "abort")) abort();
    if (!strcmp(mode, "recover")) {
        struct sigaction old;
        sigaction(SIGSEGV, 0, &old);
        printf("%s\n", old.sa_handler == SIG_DFL ? "default" : "changed");
        signal(SIGSEGV, on_segv);
        if (sigsetjmp(back, 1) == 0) *(volatile int *)0 = 1;
        printf("recovered\n");
        return 0;
    }
    *(volatile int *)0 = 1;
    return 0;
}
