/* heapreplay.h: place named markers in a heapreplay trace.
 *
 *   #include "heapreplay.h"
 *   ...
 *   heapreplay_mark("after warm-up");
 *
 * then, after recording:  heapreplay --at-marker "after warm-up" trace.zst
 *
 * The program needs no link-time dependency: heapreplay_marker is declared
 * weak, so when librecord.so is not preloaded its address is NULL and
 * heapreplay_mark does nothing. Markers are cheap (no lock, no allocation)
 * and may be placed from any thread, or from a signal handler. Names longer
 * than 63 bytes are cut.
 *
 * Without this header, the same can be done at run time:
 *   void (*mark)(const char *) = (void (*)(const char *))dlsym(RTLD_DEFAULT, "heapreplay_marker");
 *   if (mark) mark("after warm-up");
 */
#ifndef HEAPREPLAY_H
#define HEAPREPLAY_H

#ifdef __cplusplus
extern "C" {
#endif

/* Defined by librecord.so; NULL when the recorder is not loaded. */
void heapreplay_marker(const char *name) __attribute__((weak));

/* Places a marker named `name` if the recorder is loaded. */
static inline void heapreplay_mark(const char *name) {
    if (heapreplay_marker) heapreplay_marker(name);
}

#ifdef __cplusplus
}
#endif

#endif
