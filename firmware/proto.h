/* synchub sync box: wire protocol constants (see PROTOCOL.md; drivers/syncbox_protocol.py mirrors them). */
#ifndef SYNCBOX_PROTO_H
#define SYNCBOX_PROTO_H

#include <stdint.h>

#define PROTO_VERSION 1
#define FW_MAJOR 1
#define FW_MINOR 1

/* host -> device */
#define CMD_PING 0x01       /* token u32 */
#define CMD_SET 0x02        /* mode u8, period u32, width u32, bit u32 (ticks) */
#define CMD_START 0x03      /* (empty) */
#define CMD_STOP 0x04       /* (empty) */
#define CMD_RESET 0x05      /* (empty): reset counters */
#define CMD_VERSION 0x06    /* (empty) */
#define CMD_STATUS 0x07     /* (empty) */

/* device -> host */
#define MSG_PULSE 0x81      /* index u32, value u32, t u64 */
#define MSG_EDGE 0x82       /* channel u8, polarity u8, lost_after u16, edge index u32, t u64 */
#define MSG_PONG 0x83       /* req_seq u16, token u32, t_rx u64, t_tx u64 */
#define MSG_STATUS 0x84     /* see PROTOCOL.md */
#define MSG_VERSION 0x85    /* see PROTOCOL.md */
#define MSG_ERROR 0x86      /* req_seq u16, code u8, detail u8 */
#define MSG_ACK 0x87        /* req_seq u16, cmd u8 */

/* error codes */
#define ERR_CRC 1
#define ERR_COBS 2
#define ERR_SHORT 3
#define ERR_LONG 4
#define ERR_UNKNOWN 5
#define ERR_LENGTH 6
#define ERR_VALUE 7
#define ERR_BUSY 8
#define ERR_OVERRUN 9
#define ERR_TIMING 10       /* SET faster than the box can meet (detail: LIM_*) */

/* ERROR detail of ERR_VALUE / ERR_TIMING for SET: the limit that failed */
#define LIM_MODE 0          /* unknown mode */
#define LIM_WIDTH 1         /* pulse width < MIN_GAP */
#define LIM_GAP 2           /* pulse period - width < MIN_GAP */
#define LIM_BIT 3           /* barcode bit < MIN_GAP, or too long */
#define LIM_PERIOD 4        /* period < MIN_PERIOD, > 2^31 - 1, or (barcode) < 45 bits */

/* pulse modes */
#define MODE_PULSE 0
#define MODE_BARCODE 1
#define MODE_HARP 2

#define SEQ_NONE 0xFFFF

/* frame helpers (frame.c) */
uint16_t crc16_ccitt_false(const uint8_t *p, uint8_t n);
/* COBS-encode n bytes of src into dst (needs n + 1 + n/254 bytes), no delimiter; returns the length. */
uint8_t cobs_encode(const uint8_t *src, uint8_t n, uint8_t *dst);
/* COBS-decode n bytes in place; returns the decoded length or -1 when malformed. */
int16_t cobs_decode(uint8_t *buf, uint8_t n);

#endif
