/* syncbox-sim: run the sync box firmware ELF in simavr, cycle by cycle.
 *
 *  - records every edge of the sync output pin (PB1/OC1A) with its simulated cycle;
 *  - injects edges on the capture input (PB0/ICP1) at given cycles (from a file, or from stdin commands);
 *  - bridges the UART to a pty, so a host program talks to the firmware with pyserial as to a real board;
 *  - optionally traces interrupt vector entries (for latency) and paces simulated time to real time.
 *
 * Simulated time is the cycle counter (16 MHz: 62.5 ns per cycle).  Without -r the simulation runs as fast as
 * it can (usually faster than real time); with -r it never runs ahead of real time (it may fall behind on a
 * busy machine; the "N" reply and "I" lines give the host time of a cycle).
 *
 * Output lines (stdout):
 *   PTY <path>                       the pty the UART is bridged to
 *   O <cycle> <level> <exact>        sync output edge: cycle the pin changed in simavr, new level, and the
 *                                    cycle of the timer compare match that caused it (simavr processes timer
 *                                    events between instructions, so <cycle> may lag <exact> by up to 4 cycles)
 *   I <sched> <cycle> <level> <ns>   injected input edge: scheduled cycle, cycle applied, level, host
 *                                    CLOCK_MONOTONIC ns when it was applied
 *   V <vector> <cycle>               interrupt vector entry (with -v)
 *   R <cycle>                        a RETI executed (with -v): the end of an interrupt handler
 *   N <cycle> <ns>                   reply to "now"
 *   G <count>                        spurious simavr OC1A actions filtered out (see out_edge below)
 *   U <count>                        UART bytes lost because the host did not read the pty in time (at exit;
 *                                    with -b the simulation waits for the host instead)
 *   X <reason> <cycle>               the simulation stopped
 * stdin commands (with -c): "edge <cycle> <level>" ("+<n>" = n cycles from now), "hold <cycle>" (do not
 *                                    simulate past it; 0 = no limit), "pace 1|0" (keep pace with real time from
 *                                    here on, or run flat out), "now", "peek <hex data address>" (prints "P addr value"), "reset" (external
 * reset: prints "Z <cycle>"), "quit".
 * Inject file (-i): lines "<cycle> <level>", any order.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <simavr/avr_ioport.h>
#include <simavr/avr_timer.h>
#include <simavr/avr_uart.h>
#include <simavr/sim_avr.h>
#include <simavr/sim_elf.h>
#include <simavr/sim_irq.h>

static avr_t *avr;
static avr_timer_t *timer1;
static FILE *out;
static int vector_trace;
static unsigned long long trace_from, trace_to; /* -T from,to: PC trace (debugging) */
static uint64_t t_start_ns;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------ output pin
 * The sync output is OC1A (PB1).  On the ATmega328P, in normal mode the compare output unit changes OC1A
 * only on a compare match (set/clear/toggle per COM1A1:0).  simavr 1.6 also applies its PWM "clear/set at
 * TOP" action at every overflow and at every OCR1A write (it reconfigures the timer), which would put false
 * edges on the pin.  The harness therefore models the OC1A pin the way the hardware drives it: while COM1A
 * is connected, only compare-match events whose value is the COM1A action change the pin; while it is
 * disconnected the pin follows PORTB1.  (The spurious simavr actions are counted in "G" lines.) */
static int out_level = -1;
static unsigned long long glitches;

static uint64_t compare_exact(uint64_t c)
{
    /* the pin changes when TCNT1 steps past OCR1A: cycle tov_base + (OCR1A + 1) * prescaler, mod TOP */
    if (!timer1 || !timer1->tov_cycles)
        return c;
    uint64_t period = timer1->tov_cycles;
    uint64_t presc = period / ((uint64_t)timer1->tov_top + 1);
    uint16_t ocr = avr->data[0x88] | (avr->data[0x89] << 8);
    uint64_t at = ((uint64_t)ocr + 1) * presc % period;
    uint64_t phase = (c - timer1->tov_base) % period;
    uint64_t lag = (phase + period - at) % period;
    return lag < 64 ? c - lag : c;
}

static void out_edge(int level, uint64_t exact)
{
    if (level == out_level)
        return;
    out_level = level;
    fprintf(out, "O %llu %d %llu\n", (unsigned long long)avr->cycle, level, (unsigned long long)exact);
}

static void port_pin_cb(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq, (void)param;
    if ((avr->data[0x80] & 0xC0) == 0) /* COM1A disconnected: PORTB1 drives the pin */
        out_edge(value & 1, avr->cycle);
}

/* Disconnecting the compare output unit (COM1A := 0, as STOP does) hands the pin back to PORTB1 at once on the
 * hardware: an edge when the OC1A level and PORTB1 differ.  simavr raises no port IRQ when PORTB1 itself does not
 * change, so the COM1A bits are checked after every instruction. */
static int prev_com = -1;

static void com_check(void)
{
    int com = avr->data[0x80] >> 6;
    if (com == prev_com)
        return;
    prev_com = com;
    if (com == 0)
        out_edge((avr->data[0x25] >> 1) & 1, avr->cycle); /* PORTB (data 0x25), bit 1 = OC1A */
}

static void pb0_debug_cb(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq, (void)param;
    fprintf(out, "D pb0 %u at %llu pc=%x\n", value, (unsigned long long)avr->cycle, avr->pc);
}

/* TIFR1 is write-one-to-clear per flag (datasheet).  simavr 1.6's handler also drops flags (and their
 * pending interrupts) that were written as 0, which loses captures and overflows; the harness installs
 * the datasheet behaviour. */
static void tifr1_write(avr_t *a, avr_io_addr_t addr, uint8_t v, void *param)
{
    avr_timer_t *p = param;
    avr_int_vector_t *vecs[4] = {&p->overflow, &p->icr, &p->comp[0].interrupt, &p->comp[1].interrupt};
    for (int i = 0; i < 4; i++) {
        avr_int_vector_t *vec = vecs[i];
        if (vec->raised.reg == addr && (v & (1 << vec->raised.bit)) && avr_regbit_get(a, vec->raised)) {
            avr_clear_interrupt(a, vec);
            avr_regbit_clear(a, vec->raised);
        }
    }
}

/* Setting an interrupt enable bit while its flag is set makes the interrupt pending (datasheet: the flag is the
 * request); simavr 1.6 pends an interrupt only when its flag is raised while enabled, so a capture flagged
 * while the firmware had TIMSK1.ICIE1 cleared would wait for the next capture.  The harness re-raises flagged
 * vectors whose enable bit a TIMSK1 write sets. */
static void timsk1_write(avr_t *a, avr_io_addr_t addr, uint8_t v, void *param)
{
    avr_timer_t *p = param;
    avr_int_vector_t *vecs[4] = {&p->overflow, &p->icr, &p->comp[0].interrupt, &p->comp[1].interrupt};
    uint8_t old = a->data[addr];
    a->data[addr] = v;
    for (int i = 0; i < 4; i++) {
        avr_int_vector_t *vec = vecs[i];
        uint8_t bit = 1 << vec->enable.bit;
        if (vec->enable.reg == addr && !(old & bit) && (v & bit) && avr_regbit_get(a, vec->raised))
            avr_raise_interrupt(a, vec);
    }
}

static void compare_cb(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq, (void)param;
    int com = avr->data[0x80] >> 6, level = value & 1;
    if (com == 0)
        return;
    if ((com == 2 && level != 0) || (com == 3 && level != 1)) {
        glitches++; /* simavr's PWM-style action at TOP / on reconfigure: not a hardware edge */
        return;
    }
    out_edge(level, compare_exact(avr->cycle));
}

/* ------------------------------------------------------------ input injection */
struct inj {
    uint64_t cycle;
    int level;
};
static struct inj *injq;
static size_t inj_n, inj_cap, inj_pos; /* sorted; [inj_pos, inj_n) pending */
static avr_irq_t *in_irq;

static avr_cycle_count_t inj_cb(avr_t *a, avr_cycle_count_t when, void *param);

static void inj_schedule(void)
{
    avr_cycle_timer_cancel(avr, inj_cb, NULL);
    if (inj_pos < inj_n) {
        uint64_t c = injq[inj_pos].cycle;
        avr_cycle_timer_register(avr, c > avr->cycle ? c - avr->cycle : 1, inj_cb, NULL);
    }
}

static avr_cycle_count_t inj_cb(avr_t *a, avr_cycle_count_t when, void *param)
{
    (void)param;
    while (inj_pos < inj_n && injq[inj_pos].cycle <= when) {
        struct inj *e = &injq[inj_pos++];
        avr_raise_irq(in_irq, e->level);
        if (getenv("SIM_DEBUG")) fprintf(out, "D tccr1b=%02x timsk1=%02x tifr1=%02x sreg_i=%d pinb=%02x pc=%x\n", a->data[0x81], a->data[0x6f], a->data[0x36], a->sreg[7], a->data[0x23], a->pc);
        fprintf(out, "I %llu %llu %d %llu\n", (unsigned long long)e->cycle, (unsigned long long)a->cycle,
                e->level, (unsigned long long)mono_ns());
    }
    if (inj_pos < inj_n)
        return injq[inj_pos].cycle > when ? injq[inj_pos].cycle : when + 1;
    return 0;
}

static void inj_add(uint64_t cycle, int level)
{
    if (inj_n == inj_cap) {
        inj_cap = inj_cap ? inj_cap * 2 : 256;
        injq = realloc(injq, inj_cap * sizeof *injq);
    }
    /* keep [inj_pos, inj_n) sorted: insert after the last entry not later than this one (edges usually come
     * in order, so this is an append) */
    size_t i = inj_n;
    while (i > inj_pos && injq[i - 1].cycle > cycle)
        i--;
    memmove(injq + i + 1, injq + i, (inj_n - i) * sizeof *injq);
    injq[i].cycle = cycle;
    injq[i].level = level ? 1 : 0;
    inj_n++;
}

static void load_inject_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        exit(2);
    }
    unsigned long long c;
    int lv;
    while (fscanf(f, "%llu %d", &c, &lv) == 2)
        inj_add(c, lv);
    fclose(f);
}

/* ------------------------------------------------------------ UART <-> pty */
static int pty_master = -1;
static int uart_xon = 1;
static uint8_t rxq[4096];
static size_t rxq_len;
static uint8_t txq[4096];
static size_t txq_len;
static avr_irq_t *uart_in;

static unsigned long long tx_lost; /* bytes the host did not read in time (pty and txq full) */

static void uart_out_cb(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)param;
    if (txq_len < sizeof txq)
        txq[txq_len++] = (uint8_t)value;
    else
        tx_lost++;
}
static void uart_xon_cb(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq, (void)value, (void)param;
    uart_xon = 1;
}
static void uart_xoff_cb(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq, (void)value, (void)param;
    uart_xon = 0;
}

static void pump_uart(void)
{
    if (pty_master < 0)
        return;
    if (rxq_len < sizeof rxq) {
        ssize_t r = read(pty_master, rxq + rxq_len, sizeof rxq - rxq_len);
        if (r > 0)
            rxq_len += (size_t)r;
    }
    size_t k = 0;
    while (k < rxq_len && uart_xon)
        avr_raise_irq(uart_in, rxq[k++]);
    if (k) {
        memmove(rxq, rxq + k, rxq_len - k);
        rxq_len -= k;
    }
    if (txq_len) {
        ssize_t w = write(pty_master, txq, txq_len);
        if (w > 0) {
            memmove(txq, txq + w, txq_len - (size_t)w);
            txq_len -= (size_t)w;
        } else if (w < 0 && errno != EAGAIN && errno != EIO) {
            txq_len = 0;
        } else if (w < 0 && errno == EIO) {
            txq_len = 0; /* no reader on the slave side: the bytes are lost, as on a real unplugged line */
        }
    }
}

static int open_pty(const char *link)
{
    int master, slave;
    char name[256];
    struct termios t;
    if (openpty(&master, &slave, name, NULL, NULL) < 0) {
        perror("openpty");
        exit(2);
    }
    cfmakeraw(&t);
    tcgetattr(slave, &t);
    cfmakeraw(&t);
    tcsetattr(slave, TCSANOW, &t);
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    if (link) {
        unlink(link);
        if (symlink(name, link) < 0) {
            perror("symlink");
            exit(2);
        }
    }
    fprintf(out, "PTY %s\n", name);
    fflush(out);
    /* keep the slave open so the master never sees EIO while the host reconnects */
    return master;
}

/* ------------------------------------------------------------ stdin commands */
static char cmdbuf[4096];
static size_t cmdlen;
static int quit;

static uint64_t hold_at; /* "hold <cycle>": stop simulating at this cycle until the host moves it (0: off) */
static int realtime;     /* -r or "pace 1": simulated time keeps pace with the host's clock */
static unsigned long freq = 16000000;

static void handle_cmd(char *line)
{
    unsigned long long c;
    int lv;
    if (sscanf(line, "edge +%llu %d", &c, &lv) == 2) {
        inj_add(avr->cycle + c, lv);
        inj_schedule();
    } else if (sscanf(line, "edge %llu %d", &c, &lv) == 2) {
        inj_add(c, lv);
        inj_schedule();
    } else if (strncmp(line, "now", 3) == 0) {
        fprintf(out, "N %llu %llu\n", (unsigned long long)avr->cycle, (unsigned long long)mono_ns());
    } else if (sscanf(line, "peek %llx", &c) == 1 && c < 0x900) {
        fprintf(out, "P %llx %02x\n", c, avr->data[c]); /* a data-space byte (register or RAM) */
    } else if (strncmp(line, "reset", 5) == 0) {
        /* the reset button (or a watchdog reset): the firmware reboots, its clock restarts at 0 */
        avr_reset(avr);
        avr->data[0x54] |= 1 << 1; /* MCUSR.EXTRF */
        fprintf(out, "Z %llu\n", (unsigned long long)avr->cycle);
    } else if (sscanf(line, "hold %llu", &c) == 1) {
        hold_at = c; /* the simulation does not run past cycle c ("hold 0": no limit) */
    } else if (sscanf(line, "pace %d", &lv) == 1) {
        /* "pace 1": from here on keep pace with real time (the current cycle is "now"); "pace 0": run flat out */
        if (lv && !realtime)
            t_start_ns = mono_ns() - (uint64_t)((double)avr->cycle * 1e9 / (double)freq);
        realtime = lv != 0;
    } else if (strncmp(line, "quit", 4) == 0) {
        quit = 1;
    } else if (line[0]) {
        fprintf(out, "? %s\n", line);
    }
}

static void poll_stdin(void)
{
    ssize_t r = read(0, cmdbuf + cmdlen, sizeof cmdbuf - 1 - cmdlen);
    if (r == 0) {
        quit = 1; /* stdin closed: the controlling process went away */
        return;
    }
    if (r < 0)
        return;
    cmdlen += (size_t)r;
    char *nl;
    while ((nl = memchr(cmdbuf, '\n', cmdlen))) {
        *nl = 0;
        handle_cmd(cmdbuf);
        size_t used = (size_t)(nl - cmdbuf) + 1;
        memmove(cmdbuf, cmdbuf + used, cmdlen - used);
        cmdlen -= used;
    }
}

static void no_sleep(avr_t *a, avr_cycle_count_t how_long) { (void)a, (void)how_long; }
static void quiet_logger(avr_t *a, const int level, const char *fmt, va_list ap)
{
    (void)a;
    if (level <= LOG_WARNING) {
        vfprintf(stderr, fmt, ap);
    }
}

int main(int argc, char **argv)
{
    const char *mcu = "atmega328p", *pty_link = NULL, *inject = NULL, *outpath = NULL;
    unsigned long long max_cycles = 0;
    int commands = 0, want_pty = 0, opt;
    int backpressure = 0;
    while ((opt = getopt(argc, argv, "m:f:p:Pi:o:rn:vcT:b")) != -1) {
        switch (opt) {
        case 'm': mcu = optarg; break;
        case 'f': freq = strtoul(optarg, NULL, 0); break;
        case 'p': pty_link = optarg; want_pty = 1; break;
        case 'P': want_pty = 1; break;
        case 'i': inject = optarg; break;
        case 'o': outpath = optarg; break;
        case 'r': realtime = 1; break;
        case 'b': backpressure = 1; break;
        case 'n': max_cycles = strtoull(optarg, NULL, 0); break;
        case 'v': vector_trace = 1; break;
        case 'c': commands = 1; break;
        case 'T': sscanf(optarg, "%llu,%llu", &trace_from, &trace_to); break;
        default:
            fprintf(stderr, "usage: %s [-m mcu] [-f hz] [-p link|-P] [-i inject] [-o out] [-r] [-b] [-n cycles] [-v] [-c] "
                            "firmware.elf\n", argv[0]);
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "%s: no firmware ELF given\n", argv[0]);
        return 2;
    }
    out = outpath ? fopen(outpath, "w") : stdout;
    if (!out) {
        perror(outpath);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    avr_global_logger_set(quiet_logger);

    elf_firmware_t fw;
    memset(&fw, 0, sizeof fw);
    if (elf_read_firmware(argv[optind], &fw) != 0) {
        fprintf(stderr, "%s: cannot read ELF %s\n", argv[0], argv[optind]);
        return 2;
    }
    strncpy(fw.mmcu, mcu, sizeof fw.mmcu - 1);
    fw.frequency = freq;
    avr = avr_make_mcu_by_name(mcu);
    if (!avr) {
        fprintf(stderr, "%s: unknown mcu %s\n", argv[0], mcu);
        return 2;
    }
    avr_init(avr);
    avr_load_firmware(avr, &fw);
    avr->frequency = freq;
    avr->sleep = no_sleep; /* simulated time is the cycle counter; pacing (-r) is ours */
    avr->log = LOG_WARNING;

    for (avr_io_t *io = avr->io_port; io; io = io->next)
        if (io->kind && !strcmp(io->kind, "timer") && ((avr_timer_t *)io)->name == '1')
            timer1 = (avr_timer_t *)io;

    if (!timer1) {
        fprintf(stderr, "%s: no timer1 in %s\n", argv[0], mcu);
        return 2;
    }
    avr->io[AVR_DATA_TO_IO(timer1->overflow.raised.reg)].w.c = tifr1_write;
    avr->io[AVR_DATA_TO_IO(timer1->overflow.raised.reg)].w.param = timer1;
    avr->io[AVR_DATA_TO_IO(timer1->overflow.enable.reg)].w.c = timsk1_write;
    avr->io[AVR_DATA_TO_IO(timer1->overflow.enable.reg)].w.param = timer1;
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('B'), 1), port_pin_cb, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_TIMER_GETIRQ('1'), TIMER_IRQ_OUT_COMP + 0), compare_cb, NULL);
    in_irq = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('B'), 0);
    if (getenv("SIM_DEBUG"))
        avr_irq_register_notify(in_irq, pb0_debug_cb, NULL);

    uint32_t flags = 0;
    avr_ioctl(avr, AVR_IOCTL_UART_GET_FLAGS('0'), &flags);
    flags &= ~(AVR_UART_FLAG_STDIO | AVR_UART_FLAG_POLL_SLEEP);
    avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
    uart_in = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT), uart_out_cb, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON), uart_xon_cb, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF), uart_xoff_cb, NULL);

    if (want_pty)
        pty_master = open_pty(pty_link);
    if (inject)
        load_inject_file(inject);
    inj_schedule();
    if (commands)
        fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);

    t_start_ns = mono_ns();
    uint64_t last_flush = 0;
    const char *why = "done";
    while (!quit) {
        /* at most ~1 ms of simulated time per batch (a sleeping AVR jumps to its next timer event), so
         * stdin commands and UART bytes are taken at least every simulated millisecond */
        uint64_t batch_end = avr->cycle + freq / 1000;
        if (hold_at && batch_end > hold_at)
            batch_end = hold_at;
        /* held, or (-b) the host has not read what the board sent: keep serving the host, simulate nothing
         * (a batch sends at most ~100 bytes at 1 Mbaud, so with -b no byte is ever dropped) */
        if ((hold_at && avr->cycle >= hold_at) || (backpressure && txq_len > sizeof txq - 512)) {
            pump_uart();
            if (commands)
                poll_stdin();
            fflush(out);
            struct timespec ts = {0, 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        for (int k = 0; k < 4000 && avr->cycle < batch_end; k++) {
            int reti = vector_trace && avr->flash[avr->pc] == 0x18 && avr->flash[avr->pc + 1] == 0x95;
            int state = avr_run(avr);
            com_check();
            if (reti)
                fprintf(out, "R %llu\n", (unsigned long long)avr->cycle);
            if (trace_to && avr->cycle >= trace_from && avr->cycle <= trace_to)
                fprintf(out, "T %llu %x %02x\n", (unsigned long long)avr->cycle, avr->pc, avr->data[0x36]);
            if (vector_trace && avr->pc < 26 * 4 && avr->pc > 0 && !(avr->pc & 3))
                fprintf(out, "V %u %llu\n", avr->pc / 4, (unsigned long long)avr->cycle);
            if (state == cpu_Done || state == cpu_Crashed) {
                why = state == cpu_Done ? "done" : "crashed";
                quit = 1;
                break;
            }
        }
        if (max_cycles && avr->cycle >= max_cycles) {
            why = "max-cycles";
            break;
        }
        pump_uart();
        if (commands)
            poll_stdin();
        uint64_t now = mono_ns();
        if (realtime) {
            uint64_t target = t_start_ns + (uint64_t)((double)avr->cycle * 1e9 / (double)freq);
            if (target > now + 200000) {
                struct timespec ts = {0, (long)(target - now)};
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec = ts.tv_nsec / 1000000000L;
                    ts.tv_nsec %= 1000000000L;
                }
                nanosleep(&ts, NULL);
            }
        }
        if (now - last_flush > 2000000) {
            fflush(out);
            last_flush = now;
        }
    }
    fprintf(out, "G %llu\n", glitches);
    fprintf(out, "U %llu\n", tx_lost);
    fprintf(out, "X %s %llu\n", why, (unsigned long long)avr->cycle);
    fflush(out);
    return 0;
}
