/* COBS framing and CRC-16/CCITT-FALSE (a.k.a. CRC-16/IBM-3740: poly 0x1021, init 0xFFFF, no reflection,
 * no final xor; check value 0x29B1 for "123456789"). */
#include "proto.h"

#include <util/crc16.h>

uint16_t crc16_ccitt_false(const uint8_t *p, uint8_t n)
{
    uint16_t crc = 0xFFFF;
    while (n--)
        crc = _crc_xmodem_update(crc, *p++);
    return crc;
}

uint8_t cobs_encode(const uint8_t *src, uint8_t n, uint8_t *dst)
{
    uint8_t code_at = 0, out = 1, code = 1;
    for (uint8_t i = 0; i < n; i++) {
        if (src[i] == 0) {
            dst[code_at] = code;
            code_at = out++;
            code = 1;
        } else {
            dst[out++] = src[i];
            if (++code == 0xFF) {
                dst[code_at] = code;
                code_at = out++;
                code = 1;
            }
        }
    }
    dst[code_at] = code;
    return out;
}

int16_t cobs_decode(uint8_t *buf, uint8_t n)
{
    uint8_t in = 0, out = 0;
    while (in < n) {
        uint8_t code = buf[in++];
        if (code == 0)
            return -1;
        for (uint8_t k = 1; k < code; k++) {
            if (in >= n)
                return -1;
            uint8_t b = buf[in++];
            if (b == 0)
                return -1;
            buf[out++] = b;
        }
        if (code != 0xFF && in < n)
            buf[out++] = 0;
    }
    return out;
}
