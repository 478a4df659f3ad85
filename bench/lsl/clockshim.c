/* A drifting CLOCK_MONOTONIC for one process, for `synchub bench lsl-inlet`: preloaded (LD_PRELOAD) into an LSL
 * outlet's process so that liblsl's local_clock (std::chrono::steady_clock -> clock_gettime), its sample stamps and
 * its answers to time_correction probes all run on a clock that drifts against the host's:
 *
 *   fake = real + offset + skew * (real - r0) + wander * sin(2 pi (real - r0) / period)
 *
 * r0 is the real clock when the library loaded.  Parameters from the environment: SHIM_OFFSET_NS, SHIM_SKEW (a
 * fraction: 50e-6 is 50 ppm), SHIM_WANDER_NS, SHIM_WANDER_PERIOD_S.  shim_real_ns() and shim_r0_ns() let the
 * process read the real clock and the origin (the benchmark's truth).  Timed waits inside the process use the fake
 * clock too: keep the offset small (the drift moves them by microseconds per second). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static int (*real_gettime)(clockid_t, struct timespec *);
static double skew, wander_ns, period_s = 1.0;
static int64_t offset_ns, r0_ns;

static int64_t now_real(void) {
    struct timespec ts;
    real_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

__attribute__((constructor)) static void shim_init(void) {
    const char *s;
    real_gettime = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    if ((s = getenv("SHIM_SKEW"))) skew = atof(s);
    if ((s = getenv("SHIM_OFFSET_NS"))) offset_ns = atoll(s);
    if ((s = getenv("SHIM_WANDER_NS"))) wander_ns = atof(s);
    if ((s = getenv("SHIM_WANDER_PERIOD_S"))) period_s = atof(s);
    r0_ns = now_real();
}

int64_t shim_real_ns(void) { return now_real(); }
int64_t shim_r0_ns(void) { return r0_ns; }

int64_t shim_fake_of(int64_t real) {
    double dt = (double)(real - r0_ns);
    return real + offset_ns + (int64_t)llround(skew * dt + wander_ns * sin(2.0 * M_PI * dt / (period_s * 1e9)));
}

int clock_gettime(clockid_t clk, struct timespec *tp) {
    int rc = real_gettime(clk, tp);
    if (rc == 0 && (clk == CLOCK_MONOTONIC || clk == CLOCK_MONOTONIC_RAW || clk == CLOCK_BOOTTIME)) {
        int64_t fake = shim_fake_of((int64_t)tp->tv_sec * 1000000000LL + tp->tv_nsec);
        tp->tv_sec = fake / 1000000000LL;
        tp->tv_nsec = fake % 1000000000LL;
    }
    return rc;
}
