/* synchub sync box firmware: ATmega328P @ 16 MHz (Arduino Uno/Nano).
 *
 *  - Timer1 runs free (normal mode) and is the device clock, extended to 64 bits by counting overflows.
 *  - OC1A (PB1, Arduino D9) emits the sync output by hardware compare match: each edge is scheduled on
 *    the timer, so edges sit exactly on their tick whatever the CPU is doing.  Modes: pulse train,
 *    32-bit barcode, Harp-style 1 kbaud per-second code (formats: .notes/codecs.md, PROTOCOL.md).
 *  - ICP1 (PB0, Arduino D8) timestamps rising and falling edges in hardware (ICR1).
 *  - UART: COBS frames with type, sequence number, payload, CRC-16/CCITT-FALSE (PROTOCOL.md).
 *  - Watchdog: 250 ms; the main loop feeds it.
 */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>
#include <avr/wdt.h>
#include <string.h>

#include "proto.h"

#ifndef F_CPU
#define F_CPU 16000000UL
#endif
#ifndef BAUD
#define BAUD 1000000UL
#endif
#ifndef T1_PRESCALER
#define T1_PRESCALER 1
#endif

#ifndef CHECK_TIMING
#define CHECK_TIMING 1 /* 0: SET accepts timings it cannot meet (only to measure the limits) */
#endif

#if T1_PRESCALER == 1
#define T1_CS (1 << CS10)
#elif T1_PRESCALER == 8
#define T1_CS (1 << CS11)
#else
#error "T1_PRESCALER must be 1 or 8"
#endif

#define TICKS_PER_S (F_CPU / T1_PRESCALER)
#define TICKS_PER_MS (TICKS_PER_S / 1000UL)
/* Timing limits (PROTOCOL.md, "SET limits"), set in CPU cycles and rounded up to Timer1 ticks.
 *  - An edge is armed on OCR1A when it is due within HORIZON ticks; OVF (TCNT=0) and COMPB (TCNT=0x8000)
 *    look every 32768 ticks, so an edge far from the previous one is armed at least 16384 ticks ahead.
 *  - An edge close to the previous one is armed by the compare ISR of that edge.  GUARD is the least lead
 *    it may be armed with (from the TCNT1 read, OCR1A, TCCR1A, TIFR1 and TIMSK1 are written within about
 *    70 cycles).  MIN_GAP, the least time between two output edges, covers the wait for that ISR (a handler
 *    or a cli section in progress, the non-interruptible start of a capture), the ISR's way to its TCNT1
 *    read (200-225 cycles, traced in simavr) and GUARD.  Measured in simavr under load (bench/firmware.py):
 *    edges 700 cycles apart are all met (600 in most runs, 500 in none); MIN_GAP keeps 324 cycles of margin.
 *  - MIN_PERIOD: one code (pulse, barcode, Harp second) sends one PULSE frame (23 bytes 8N1 on the wire);
 *    codes may use at most half of the UART, the rest is left for EDGE, PONG and STATUS frames. */
#define CYC_TO_TICKS(c) (((c) + T1_PRESCALER - 1) / T1_PRESCALER)
#define HORIZON 49152U
#define GUARD CYC_TO_TICKS(128UL)
#define MIN_GAP CYC_TO_TICKS(1024UL)
#define PULSE_WIRE_BITS 230UL
#define MIN_PERIOD ((uint32_t)CYC_TO_TICKS((2ULL * PULSE_WIRE_BITS * F_CPU + BAUD - 1) / BAUD))
#define START_LEAD TICKS_PER_MS
#define MAX_PERIOD 0x7FFFFFFFUL /* ISRs use 32-bit time differences */
#define BARCODE_SLOTS 45UL       /* a barcode period is at least 45 bit times: 35 bits and 10 idle */

#define OUT_BIT PB1 /* OC1A */
#define IN_BIT PB0  /* ICP1 */

/* ---------------------------------------------------------------- device clock
 * Device time (ticks) = ovf_hi:ovf:TCNT1 = 16 + 32 + 16 bits.  ISRs work on the low 32 bits (wrap after
 * 268 s at 16 MHz; every ISR delta is far shorter); the main loop extends them to 64 bits. */
static volatile uint32_t ovf;    /* Timer1 overflows counted */
static volatile uint16_t ovf_hi; /* overflows of ovf */

/* Low 32 bits of device time; interrupts disabled.  An overflow that happened but is not counted yet shows
 * as TOV1 set with a small TCNT1 value. */
__attribute__((always_inline)) static inline uint32_t now32(void)
{
    uint16_t t = TCNT1;
    uint16_t o = (uint16_t)ovf;
    if ((TIFR1 & (1 << TOV1)) && t < 0x8000)
        o++;
    return ((uint32_t)o << 16) | t;
}

static uint64_t now64(void)
{
    uint8_t s = SREG;
    cli();
    uint16_t t = TCNT1;
    uint32_t o = ovf;
    uint16_t h = ovf_hi;
    if ((TIFR1 & (1 << TOV1)) && t < 0x8000) {
        if (++o == 0)
            h++;
    }
    SREG = s;
    return ((uint64_t)h << 48) | ((uint64_t)o << 16) | t;
}

/* 64-bit time of a past instant known by its low 32 bits (less than 2^31 ticks ago). */
static uint64_t extend(uint32_t t32)
{
    uint64_t n = now64();
    return n - (uint32_t)((uint32_t)n - t32);
}

/* ---------------------------------------------------------------- events (ISR -> main loop) */
#define EV_PULSE 1
#define EV_EDGE 2
struct event {
    uint8_t kind;
    uint8_t pol;
    uint16_t lost;
    uint32_t a; /* pulse index / edge index */
    uint32_t b; /* code value */
    uint32_t t; /* low 32 bits of device time */
};
#define EVQ 16
static struct event evq[EVQ];
static volatile uint8_t ev_head, ev_tail;
static volatile uint16_t ev_dropped;

__attribute__((always_inline)) static inline void ev_push(uint8_t kind, uint8_t pol, uint16_t lost, uint32_t a, uint32_t b, uint32_t t)
{
    uint8_t h = ev_head, n = (uint8_t)((h + 1) & (EVQ - 1));
    if (n == ev_tail) {
        ev_dropped++;
        return;
    }
    struct event *e = &evq[h];
    e->kind = kind;
    e->pol = pol;
    e->lost = lost;
    e->a = a;
    e->b = b;
    e->t = t;
    __asm__ __volatile__("" ::: "memory");
    ev_head = n;
}

/* ---------------------------------------------------------------- input capture */
static volatile uint32_t edge_count, lost_edges;

/* Only the reads that must not wait are done with interrupts disabled; the rest lets the output compare
 * interrupt in (its latency bounds MIN_GAP), with further captures masked until the edge is queued. */
ISR(TIMER1_CAPT_vect)
{
    uint16_t icr = ICR1;
    uint8_t rising = (TCCR1B & (1 << ICES1)) ? 1 : 0;
    uint16_t o = (uint16_t)ovf;
    if ((TIFR1 & (1 << TOV1)) && icr < 0x8000)
        o++; /* captured just after an overflow whose ISR has not run yet */
    TCCR1B ^= (1 << ICES1); /* wait for the opposite edge */
    TIFR1 = (1 << ICF1);    /* changing ICES1 may set ICF1 */
    TIMSK1 &= ~(1 << ICIE1);
    sei();
    uint16_t lost = 0;
    /* The pin must still be at the level this edge set; if not, an edge came before the edge select
     * was switched and could not be timestamped.  Re-sync the edge select to the pin and count it.  (An
     * interrupt taken here only delays the check: an edge after the switch is captured, ICF1.) */
    for (uint8_t k = 0; k < 4; k++) {
        uint8_t level = (PINB >> IN_BIT) & 1;
        uint8_t want = (TCCR1B & (1 << ICES1)) ? 0 : 1; /* waiting for rising: level should be 0 */
        if (level == want || (TIFR1 & (1 << ICF1)))
            break; /* consistent, or the next edge is already captured */
        lost++;
        TCCR1B ^= (1 << ICES1);
        TIFR1 = (1 << ICF1);
    }
    cli();
    lost_edges += lost;
    ev_push(EV_EDGE, rising, lost, edge_count++, 0, ((uint32_t)o << 16) | icr);
    TIMSK1 |= (1 << ICIE1);
}

/* ---------------------------------------------------------------- sync output generator
 * The main loop prepares codes (a pulse, a barcode, a Harp second) as lists of edge offsets; the compare ISR
 * walks the current one and swaps to the prepared next one, so the ISR does only 32-bit adds.  Edge k of a
 * code goes to level !idle for even k and back to idle for odd k. */
#define MAX_EDGES 42
struct code {
    uint32_t t0;    /* low 32 bits of the first edge's device time */
    uint32_t index; /* codes emitted since reset */
    uint32_t value; /* barcode counter or Harp seconds (0 for pulses) */
    uint8_t n;      /* number of edges (even) */
    uint32_t off[MAX_EDGES];
};
static struct code codes[2];
static volatile uint8_t cur, next_ready, stalled;
static volatile uint8_t running, armed;
static uint8_t edge_k, idle_level;
static uint32_t pend_t; /* the pending edge */
static uint8_t pend_level;

static uint8_t cfg_mode = MODE_PULSE;
static uint32_t cfg_period = TICKS_PER_S / 10, cfg_width = TICKS_PER_MS, cfg_bit = 10 * TICKS_PER_MS;
static volatile uint16_t late_edges;
static uint32_t build_index, build_value; /* what the next prepared code carries */
static uint32_t build_t0;

/* Fill codes[i] for build_index/build_value/build_t0 (main loop or start; not in an ISR). */
static void build_code(uint8_t i)
{
    struct code *c = &codes[i];
    uint8_t n = 0, level = idle_level;
    c->t0 = build_t0;
    c->index = build_index;
    c->value = build_value;
    if (cfg_mode == MODE_PULSE) {
        c->off[0] = 0;
        c->off[1] = cfg_width;
        c->n = 2;
        return;
    }
    uint32_t slot_ticks = cfg_mode == MODE_HARP ? TICKS_PER_MS : cfg_bit;
    uint8_t nslots = cfg_mode == MODE_HARP ? 40 : 35;
    uint32_t v = build_value, off = 0;
    for (uint8_t s = 0; s <= nslots; s++, off += slot_ticks) {
        uint8_t lv;
        if (s == nslots) {
            lv = idle_level;
        } else if (cfg_mode == MODE_BARCODE) { /* HIGH 2T, LOW T, 32 bits LSB first */
            lv = s < 2 ? 1 : s == 2 ? 0 : (uint8_t)((v >> (s - 3)) & 1);
        } else { /* Harp: 4 bytes 8N1 LSB first, idle HIGH */
            uint8_t j = s % 10;
            lv = j == 0 ? 0 : j == 9 ? 1 : (uint8_t)((v >> (8 * (s / 10) + j - 1)) & 1);
        }
        if (lv != level) {
            c->off[n++] = off;
            level = lv;
        }
    }
    c->n = n;
}

/* Arm OCR1A for the pending edge when it is due within HORIZON ticks.  Interrupts disabled.  The pin
 * changes one timer clock after TCNT1 == OCR1A (datasheet: compare match output), hence the - 1. */
__attribute__((always_inline)) static inline void try_arm(void)
{
    if (!running || armed || stalled)
        return;
    int32_t d = (int32_t)(pend_t - now32());
    if (d < (int32_t)GUARD) { /* too late to hit it: emit it GUARD ticks from now (counted) */
        late_edges++;
        pend_t += (uint32_t)((int32_t)GUARD - d);
        d = GUARD;
    }
    if (d < (int32_t)HORIZON) {
        OCR1A = (uint16_t)(pend_t - 1); /* first: the old OCR1A value must not match with the new action */
        TCCR1A = pend_level ? ((1 << COM1A1) | (1 << COM1A0)) : (1 << COM1A1); /* set / clear on match */
        TIFR1 = (1 << OCF1A);
        TIMSK1 |= (1 << OCIE1A);
        armed = 1;
    }
}

/* Make the prepared code current; its first edge becomes pending.  Interrupts disabled. */
__attribute__((always_inline)) static inline void take_next(void)
{
    cur ^= 1;
    next_ready = 0;
    stalled = 0;
    edge_k = 0;
    pend_t = codes[cur].t0 + codes[cur].off[0];
    pend_level = !idle_level;
}

/* The pending edge has happened (the hardware set OC1A to pend_level at exactly pend_t): make the next edge
 * pending and arm it first (the time to get here bounds MIN_GAP), then report a code's first edge.
 * Interrupts disabled.  A pulse train repeats here without the main loop: its current code moves on by one
 * period.  Barcodes and Harp seconds swap to the code the main loop prepared. */
__attribute__((always_inline)) static inline void edge_done(void)
{
    TIMSK1 &= ~(1 << OCIE1A);
    armed = 0;
    struct code *c = &codes[cur];
    uint32_t t = pend_t, index = c->index, value = c->value;
    uint8_t k = edge_k, level = pend_level;
    if (++edge_k < c->n) {
        pend_t = c->t0 + c->off[edge_k];
        pend_level ^= 1;
    } else if (cfg_mode == MODE_PULSE) {
        c->t0 += cfg_period;
        c->index = index + 1;
        edge_k = 0;
        pend_t = c->t0;
        pend_level ^= 1;
    } else if (next_ready) {
        take_next();
    } else {
        stalled = 1; /* the main loop has not prepared the next code: it resumes it (late, counted) */
    }
    try_arm();
    if (k == 0)
        ev_push(EV_PULSE, level, 0, index, value, t);
}

ISR(TIMER1_COMPA_vect) { edge_done(); }

ISR(TIMER1_COMPB_vect) { try_arm(); } /* mid-epoch look-ahead (OCR1B = 0x8000) */

ISR(TIMER1_OVF_vect)
{
    if (++ovf == 0)
        ovf_hi++;
    try_arm();
}

/* Main loop: keep the next barcode / Harp code prepared (a pulse train needs nothing). */
static void gen_poll(void)
{
    if (!running || next_ready || cfg_mode == MODE_PULSE)
        return;
    struct code *c = &codes[cur];
    build_index = c->index + 1;
    if (cfg_mode == MODE_HARP) {
        build_value = c->value + 1;
        build_t0 = c->t0 + TICKS_PER_S;
    } else {
        build_value = build_index;
        build_t0 = c->t0 + cfg_period;
    }
    build_code(cur ^ 1);
    cli();
    next_ready = 1;
    if (stalled && running) {
        take_next();
        try_arm();
    }
    sei();
}

static void out_idle(uint8_t level)
{
    if (level)
        PORTB |= (1 << OUT_BIT);
    else
        PORTB &= ~(1 << OUT_BIT);
}

static uint32_t next_index; /* index of the next code to start (kept across stop/start) */
static uint8_t index_reset; /* RESET while running: the next START still begins at index 0 */

/* Stop the output at once (a code in progress is cut short) and note the index the next START continues
 * with: the current code's if none of its edges happened, else the one after it. */
static void gen_stop(void)
{
    uint8_t s = SREG;
    cli();
    if (running) {
        running = 0; /* try_arm does nothing from here on */
        if (armed) {
            /* An edge due within GUARD may happen while the compare unit is being disconnected: let it
             * happen.  One whose tick has passed happened; its interrupt has not run yet. */
            int32_t d;
            while ((d = (int32_t)(pend_t - now32())) > 0 && d <= (int32_t)GUARD)
                ;
            if (d <= 0)
                edge_done();
        }
        if (!index_reset)
            next_index = codes[cur].index + (edge_k != 0);
    }
    armed = 0;
    stalled = 0;
    TIMSK1 &= ~(1 << OCIE1A);
    TCCR1A = 0; /* OC1A disconnected: the pin follows PORTB (idle level) */
    out_idle(cfg_mode == MODE_HARP);
    SREG = s;
}

static void gen_start(void)
{
    uint64_t now = now64();
    idle_level = (cfg_mode == MODE_HARP);
    build_index = next_index;
    index_reset = 0;
    if (cfg_mode == MODE_HARP) {
        uint64_t n = (now + START_LEAD) / TICKS_PER_S + 1;
        build_value = (uint32_t)n;
        build_t0 = (uint32_t)(n * TICKS_PER_S);
    } else {
        build_value = cfg_mode == MODE_BARCODE ? build_index : 0;
        build_t0 = (uint32_t)now + START_LEAD;
    }
    build_code(cur ^ 1);
    cli();
    out_idle(idle_level);
    /* OC1A register := idle level (FOC1A), then hand the pin to the compare unit */
    TCCR1A = idle_level ? ((1 << COM1A1) | (1 << COM1A0)) : (1 << COM1A1);
    TCCR1C = (1 << FOC1A);
    take_next();
    armed = 0;
    running = 1;
    try_arm();
    sei();
}

/* ---------------------------------------------------------------- UART */
#define RXQ 128
static volatile uint8_t rx_buf[RXQ];
static volatile uint8_t rx_head, rx_tail;
static volatile uint8_t rx_overrun;
struct delim {
    uint8_t pos;
    uint32_t t;
};
#define DQ 8
static struct delim dq[DQ];
static volatile uint8_t dq_head, dq_tail;

ISR(USART_RX_vect)
{
    uint8_t st = UCSR0A;
    uint8_t b = UDR0;
    if (st & ((1 << FE0) | (1 << DOR0)))
        rx_overrun = 1;
    uint8_t h = rx_head, n = (uint8_t)((h + 1) % RXQ);
    if (n == rx_tail) {
        rx_overrun = 1;
        return;
    }
    rx_buf[h] = b;
    rx_head = n;
    if (b == 0) { /* frame delimiter: stamp the receive time (for PONG) */
        uint8_t dh = dq_head, dn = (uint8_t)((dh + 1) % DQ);
        if (dn != dq_tail) {
            dq[dh].pos = h;
            dq[dh].t = now32();
            dq_head = dn;
        }
    }
}

#define TXQ 256
static volatile uint8_t tx_buf[TXQ];
static volatile uint8_t tx_head, tx_tail; /* 8-bit indices wrap at 256 */
static uint16_t tx_seq;
static uint16_t tx_dropped, rx_errors;

ISR(USART_UDRE_vect)
{
    uint8_t t = tx_tail;
    if (t == tx_head) {
        UCSR0B &= ~(1 << UDRIE0);
        return;
    }
    UDR0 = tx_buf[t];
    tx_tail = (uint8_t)(t + 1);
}

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

#define MAX_RAW 56
static void send(uint8_t type, const uint8_t *payload, uint8_t n)
{
    uint8_t raw[MAX_RAW], enc[MAX_RAW + 2];
    uint16_t seq = tx_seq++; /* a dropped frame still uses its number: the host sees the gap */
    /* drop before encoding when it may not fit (n + 5 bytes, 1 of COBS overhead, the delimiter): a full
     * link then costs the main loop almost nothing */
    if ((uint16_t)(TXQ - 1 - (uint8_t)(tx_head - tx_tail)) < (uint16_t)(n + 7)) {
        tx_dropped++;
        return;
    }
    raw[0] = type;
    put16(raw + 1, seq);
    memcpy(raw + 3, payload, n);
    uint16_t crc = crc16_ccitt_false(raw, (uint8_t)(n + 3));
    put16(raw + 3 + n, crc);
    uint8_t len = cobs_encode(raw, (uint8_t)(n + 5), enc);
    enc[len++] = 0;
    uint8_t h = tx_head;
    for (uint8_t i = 0; i < len; i++)
        tx_buf[(uint8_t)(h + i)] = enc[i];
    tx_head = (uint8_t)(h + len);
    UCSR0B |= (1 << UDRIE0);
}

static void send_error(uint16_t req_seq, uint8_t code, uint8_t detail)
{
    uint8_t p[4];
    put16(p, req_seq);
    p[2] = code;
    p[3] = detail;
    rx_errors++;
    send(MSG_ERROR, p, 4);
}

static void send_ack(uint16_t req_seq, uint8_t cmd)
{
    uint8_t p[3];
    put16(p, req_seq);
    p[2] = cmd;
    send(MSG_ACK, p, 3);
}

static uint8_t reset_cause;
static uint32_t pulses_sent;


static void send_status(uint16_t req_seq)
{
    uint8_t p[45];
    put16(p, req_seq);
    p[2] = running;
    p[3] = cfg_mode;
    p[4] = reset_cause;
    cli();
    put32(p + 5, pulses_sent);
    put32(p + 9, edge_count);
    put32(p + 13, lost_edges);
    put16(p + 17, late_edges);
    put16(p + 21, tx_dropped);
    put16(p + 23, ev_dropped);
    sei();
    put16(p + 19, rx_errors);
    put32(p + 33, cfg_period);
    put32(p + 37, cfg_width);
    put32(p + 41, cfg_bit);
    put64(p + 25, now64());
    send(MSG_STATUS, p, 45);
}

static void send_version(uint16_t req_seq)
{
    static const char name[] = "synchub-syncbox";
    uint8_t p[18 + sizeof name - 1];
    put16(p, req_seq);
    p[2] = PROTO_VERSION;
    p[3] = FW_MAJOR;
    p[4] = FW_MINOR;
    p[5] = T1_PRESCALER;
    put32(p + 6, F_CPU);
    put32(p + 10, TICKS_PER_S);
    put32(p + 14, BAUD);
    memcpy(p + 18, name, sizeof name - 1);
    send(MSG_VERSION, p, sizeof p);
}

/* 0 when the output generator can meet this SET, else the ERROR code << 8 | detail (PROTOCOL.md). */
static uint16_t check_config(uint8_t mode, uint32_t period, uint32_t width, uint32_t bit)
{
    if (mode == MODE_HARP)
        return 0; /* period, width and bit are ignored */
    if (mode > MODE_HARP)
        return (ERR_VALUE << 8) | LIM_MODE;
    if (period > MAX_PERIOD)
        return (ERR_VALUE << 8) | LIM_PERIOD;
    if (mode == MODE_PULSE) {
        if (width < MIN_GAP)
            return (ERR_TIMING << 8) | LIM_WIDTH;
        if (period < width || period - width < MIN_GAP)
            return (ERR_TIMING << 8) | LIM_GAP;
    } else {
        if (bit < MIN_GAP)
            return (ERR_TIMING << 8) | LIM_BIT;
        if (bit > MAX_PERIOD / BARCODE_SLOTS)
            return (ERR_VALUE << 8) | LIM_BIT;
        if (period < BARCODE_SLOTS * bit)
            return (ERR_VALUE << 8) | LIM_PERIOD;
    }
    if (period < MIN_PERIOD)
        return (ERR_TIMING << 8) | LIM_PERIOD;
    return 0;
}

static void handle_frame(uint8_t *buf, uint8_t len, uint64_t t_rx)
{
    int16_t n = cobs_decode(buf, len);
    if (n < 0) {
        send_error(SEQ_NONE, ERR_COBS, 0);
        return;
    }
    if (n < 5) {
        send_error(SEQ_NONE, ERR_SHORT, (uint8_t)n);
        return;
    }
    uint16_t crc;
    memcpy(&crc, buf + n - 2, 2);
    if (crc16_ccitt_false(buf, (uint8_t)(n - 2)) != crc) {
        send_error(SEQ_NONE, ERR_CRC, buf[0]);
        return;
    }
    uint8_t type = buf[0];
    uint16_t seq;
    memcpy(&seq, buf + 1, 2);
    const uint8_t *p = buf + 3;
    uint8_t plen = (uint8_t)(n - 5);
    static const uint8_t want_len[8] = {0xFF, 4, 13, 0, 0, 0, 0, 0};
    if (type == 0 || type > CMD_STATUS) {
        send_error(seq, ERR_UNKNOWN, type);
        return;
    }
    if (plen != want_len[type]) {
        send_error(seq, ERR_LENGTH, type);
        return;
    }
    switch (type) {
    case CMD_PING: {
        uint8_t r[22];
        put16(r, seq);
        memcpy(r + 2, p, 4);
        put64(r + 6, t_rx);
        put64(r + 14, now64());
        send(MSG_PONG, r, 22);
        break;
    }
    case CMD_SET: {
        uint8_t mode = p[0];
        uint32_t period = get32(p + 1), width = get32(p + 5), bit = get32(p + 9);
        uint16_t bad = check_config(mode, period, width, bit);
        if (!CHECK_TIMING && (bad >> 8) == ERR_TIMING)
            bad = 0;
        if (running) {
            send_error(seq, ERR_BUSY, type);
        } else if (bad) {
            send_error(seq, (uint8_t)(bad >> 8), (uint8_t)bad);
        } else {
            cfg_mode = mode;
            cfg_period = period;
            cfg_width = width;
            cfg_bit = bit;
            out_idle(mode == MODE_HARP);
            send_ack(seq, type);
        }
        break;
    }
    case CMD_START:
        gen_stop();
        gen_start();
        send_ack(seq, type);
        break;
    case CMD_STOP:
        gen_stop();
        send_ack(seq, type);
        break;
    case CMD_RESET:
        cli();
        next_index = 0; /* pulse index of the next START; a running train keeps counting */
        index_reset = running;
        pulses_sent = 0;
        edge_count = 0;
        lost_edges = 0;
        late_edges = 0;
        ev_dropped = 0;
        sei();
        tx_dropped = 0;
        rx_errors = 0;
        send_ack(seq, type);
        break;
    case CMD_VERSION:
        send_version(seq);
        break;
    case CMD_STATUS:
        send_status(seq);
        break;
    }
}

#define MAX_ENC 64
static uint8_t fbuf[MAX_ENC];
static uint8_t flen, fover;

static uint8_t delim_time(uint8_t pos, uint32_t *t)
{
    uint8_t found = 0;
    cli();
    while (dq_tail != dq_head) {
        struct delim *d = &dq[dq_tail];
        dq_tail = (uint8_t)((dq_tail + 1) % DQ);
        if (d->pos == pos) {
            *t = d->t;
            found = 1;
            break;
        }
    }
    sei();
    return found;
}

/* Main loop: take received bytes up to and including one frame delimiter (and handle that frame).  Each
 * pass of the main loop does at most one frame, one event and one code, so a flood of input edges or host
 * frames fills the queues (counted drops, ERROR 9) and never keeps the watchdog unfed. */
static void poll_rx(void)
{
    while (rx_tail != rx_head) {
        uint8_t pos = rx_tail;
        uint8_t b = rx_buf[pos];
        rx_tail = (uint8_t)((pos + 1) % RXQ);
        if (b) {
            if (flen < MAX_ENC)
                fbuf[flen++] = b;
            else
                fover = 1;
            continue;
        }
        uint32_t t32;
        uint64_t t_rx = delim_time(pos, &t32) ? extend(t32) : now64();
        if (rx_overrun) {
            rx_overrun = 0;
            send_error(SEQ_NONE, ERR_OVERRUN, 0);
        } else if (fover) {
            send_error(SEQ_NONE, ERR_LONG, 0);
        } else if (flen) {
            handle_frame(fbuf, flen, t_rx);
        }
        flen = 0;
        fover = 0;
        return;
    }
}

/* Main loop: send one queued event (see poll_rx). */
static void poll_events(void)
{
    if (ev_tail != ev_head) {
        struct event *e = &evq[ev_tail];
        uint8_t p[20];
        if (e->kind == EV_PULSE) {
            put32(p, e->a);
            put32(p + 4, e->b);
            put64(p + 8, extend(e->t));
            pulses_sent++;
            send(MSG_PULSE, p, 16);
        } else {
            p[0] = 0; /* channel: ICP1 */
            p[1] = e->pol;
            put16(p + 2, e->lost);
            put32(p + 4, e->a);
            put64(p + 8, extend(e->t));
            send(MSG_EDGE, p, 16);
        }
        __asm__ __volatile__("" ::: "memory");
        ev_tail = (uint8_t)((ev_tail + 1) % EVQ);
    }
}

/* ---------------------------------------------------------------- init */
uint8_t mcusr_saved __attribute__((section(".noinit")));
void early_init(void) __attribute__((naked, used, section(".init3")));
void early_init(void)
{
    mcusr_saved = MCUSR;
    MCUSR = 0;
    wdt_disable();
}

int main(void)
{
    reset_cause = mcusr_saved;
    DDRB = (1 << OUT_BIT);
    PORTB = 0;

    /* UART: 8N1, double speed */
    UCSR0A = (1 << U2X0);
    UBRR0 = (uint16_t)((F_CPU + 4UL * BAUD) / (8UL * BAUD) - 1);
    UCSR0B = (1 << RXEN0) | (1 << TXEN0) | (1 << RXCIE0);
    UCSR0C = (1 << UCSZ01) | (1 << UCSZ00);

    /* Timer1: normal mode, free running; capture on the edge the pin will show next */
    TCCR1A = 0;
    OCR1B = 0x8000;
    uint8_t ices = (PINB & (1 << IN_BIT)) ? 0 : (1 << ICES1);
    TIFR1 = 0xFF;
    TIMSK1 = (1 << ICIE1) | (1 << TOIE1) | (1 << OCIE1B);
    TCCR1B = T1_CS | ices;

    wdt_enable(WDTO_250MS);
    sei();
    send_status(SEQ_NONE); /* boot announcement: reset_cause tells why */

    set_sleep_mode(SLEEP_MODE_IDLE);
    for (;;) {
        wdt_reset();
        poll_rx();
        poll_events();
        gen_poll();
        cli();
        if (rx_tail == rx_head && ev_tail == ev_head && !(running && !next_ready)) {
            sleep_enable();
            sei();
            sleep_cpu();
            sleep_disable();
        }
        sei();
    }
}
