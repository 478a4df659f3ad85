"""Regression: a frame whose last byte equals the first sync byte must not be counted as garbage."""

from synchub.drivers.serial.frames import SYNC, ImuDecoder, ImuSample, encode_imu_sample


def test_frame_ending_in_sync_byte_is_not_garbage():
    frames = []
    for tick in range(5000):  # find frames whose CRC ends in the sync byte
        f = encode_imu_sample(tick, tick & 0xFFFF, (1, 2, 3, 4, 5, 6))
        if f[-1] == SYNC[0]:
            frames.append(f)
        if len(frames) == 3:
            break
    assert frames, "no frame ends in the sync byte"
    dec = ImuDecoder()
    out = []
    for f in frames:  # one frame per read, as a pty delivers them
        out += dec.feed(f)
    assert all(isinstance(x, ImuSample) for x in out) and len(out) == len(frames)
    assert dec.errors == 0 and dec.skipped_bytes == 0
