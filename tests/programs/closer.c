/* Like a daemon: closes every descriptor above stderr, opens a file of its
 * own (which gets the lowest free number), allocates, and writes a line to
 * its file. Prints the file's contents. Usage: closer FILE */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *volatile sink;

__attribute__((noinline)) void work(void) { for (int i = 0; i < 20000; i++) { void *p = malloc(64); sink = p; free(p); } }

int main(int argc, char **argv) {
    for (int fd = 3; fd < 1024; fd++) close(fd);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return 1;
    work();
    const char *line = "the program's own data\n";
    if (write(fd, line, strlen(line)) < 0) return 1;
    close(fd);
    char buf[256] = {0};
    FILE *f = fopen(argv[1], "r");
    if (!f || !fgets(buf, sizeof buf, f)) return 1;
    fputs(buf, stdout);
    return 0;
}
