"""A real, tiny MP4: H.264 frames made of I_PCM macroblocks in an ISO BMFF container.

Every decoder opens it (ffprobe, browsers, OpenCV), and it needs nothing but the standard
library: each 16x16 macroblock is stored uncompressed (``mb_type`` I_PCM), so there is no
transform, no prediction and no entropy coding to get wrong. Files are larger than a real
encoder's (384 bytes a macroblock), which is fine for the emulator's few small frames.

    data = mp4(frames=8, width=256, height=256, key=b"...", fps=8)
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator

TIMESCALE = 1000
_IDENTITY = bytes(range(256))


class _Bits:
    """An RBSP bit writer with Exp-Golomb codes."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.count = 0

    def u(self, width: int, value: int) -> None:
        for shift in range(width - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> shift) & 1)
            self.count += 1
            if self.count == 8:
                self.out.append(self.acc)
                self.acc = self.count = 0

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(2 * code.bit_length() - 1, code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align_zero(self) -> None:
        while self.count:
            self.u(1, 0)

    def raw(self, data: bytes) -> None:
        assert self.count == 0
        self.out += data

    def trailing(self) -> bytes:
        self.u(1, 1)
        self.align_zero()
        return bytes(self.out)


def _nal(kind: int, rbsp: bytes) -> bytes:
    """A NAL unit (nal_ref_idc 3) with emulation-prevention bytes inserted."""
    out = bytearray([0x60 | kind])
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _sps(mb_wide: int, mb_high: int, width: int, height: int) -> bytes:
    bits = _Bits()
    bits.u(8, 66)  # profile_idc: Baseline
    bits.u(8, 0xC0)  # constraint_set0/1 flags
    bits.u(8, 51)  # level_idc 5.1
    bits.ue(0)  # seq_parameter_set_id
    bits.ue(0)  # log2_max_frame_num_minus4
    bits.ue(2)  # pic_order_cnt_type
    bits.ue(0)  # max_num_ref_frames
    bits.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
    bits.ue(mb_wide - 1)
    bits.ue(mb_high - 1)
    bits.u(1, 1)  # frame_mbs_only_flag
    bits.u(1, 1)  # direct_8x8_inference_flag
    crop_right, crop_bottom = (mb_wide * 16 - width) // 2, (mb_high * 16 - height) // 2
    bits.u(1, int(bool(crop_right or crop_bottom)))
    if crop_right or crop_bottom:
        for value in (0, crop_right, 0, crop_bottom):
            bits.ue(value)
    bits.u(1, 0)  # vui_parameters_present_flag
    return _nal(7, bits.trailing())


def _pps() -> bytes:
    bits = _Bits()
    bits.ue(0)  # pic_parameter_set_id
    bits.ue(0)  # seq_parameter_set_id
    bits.u(1, 0)  # entropy_coding_mode_flag: CAVLC
    bits.u(1, 0)  # bottom_field_pic_order_in_frame_present_flag
    bits.ue(0)  # num_slice_groups_minus1
    bits.ue(0)  # num_ref_idx_l0_default_active_minus1
    bits.ue(0)  # num_ref_idx_l1_default_active_minus1
    bits.u(1, 0)  # weighted_pred_flag
    bits.u(2, 0)  # weighted_bipred_idc
    bits.se(0)  # pic_init_qp_minus26
    bits.se(0)  # pic_init_qs_minus26
    bits.se(0)  # chroma_qp_index_offset
    bits.u(1, 1)  # deblocking_filter_control_present_flag
    bits.u(1, 0)  # constrained_intra_pred_flag
    bits.u(1, 0)  # redundant_pic_cnt_present_flag
    return _nal(8, bits.trailing())


def _slice(index: int, macroblocks: Iterator[bytes]) -> bytes:
    """One IDR picture: a single I slice whose macroblocks are all I_PCM."""
    bits = _Bits()
    bits.ue(0)  # first_mb_in_slice
    bits.ue(7)  # slice_type: I (all slices)
    bits.ue(0)  # pic_parameter_set_id
    bits.u(4, 0)  # frame_num
    bits.ue(index % 65536)  # idr_pic_id: consecutive IDR pictures differ
    bits.u(1, 0)  # no_output_of_prior_pics_flag
    bits.u(1, 0)  # long_term_reference_flag
    bits.se(0)  # slice_qp_delta
    bits.ue(1)  # disable_deblocking_filter_idc
    for samples in macroblocks:
        bits.ue(25)  # mb_type I_PCM
        bits.align_zero()
        bits.raw(samples)
    return _nal(5, bits.trailing())


def _macroblocks(frame: int, mb_wide: int, mb_high: int, key: bytes) -> Iterator[bytes]:
    """256 luma + 64 Cb + 64 Cr samples per macroblock: a seeded gradient that moves per frame.

    Samples stay within 16-235 (video range), so no zero byte can occur in them.
    """
    base_y, base_u, base_v, step_x, step_y = key[0], key[1], key[2], 1 + key[3] % 3, 1 + key[4] % 3
    width = mb_wide * 16
    ramp = bytes(16 + ((base_y + x * step_x + frame * 8) % 220) for x in range(width))
    u = bytes([16 + (base_u + frame * 5) % 220]) * 64
    v = bytes([16 + (base_v + frame * 3) % 220]) * 64
    for mb_y in range(mb_high):
        rows = [_shifted(ramp, (mb_y * 16 + y) * step_y) for y in range(16)]
        for mb_x in range(mb_wide):
            start = mb_x * 16
            yield b"".join(row[start : start + 16] for row in rows) + u + v


def _shifted(ramp: bytes, offset: int) -> bytes:
    """``ramp`` with every sample moved up by ``offset``, wrapped within 16-235."""
    return ramp.translate(_shift_table(offset % 220))


@functools.lru_cache(maxsize=256)
def _shift_table(offset: int) -> bytes:
    return bytes(16 + (value - 16 + offset) % 220 if value >= 16 else value for value in _IDENTITY)


def mp4(frames: int, width: int, height: int, key: bytes, fps: int = 8) -> bytes:
    """An MP4 of ``frames`` frames of ``width`` x ``height`` (even sizes), ``fps`` a second."""
    width, height = max(16, width - width % 2), max(16, height - height % 2)
    mb_wide, mb_high = (width + 15) // 16, (height + 15) // 16
    sps, pps = _sps(mb_wide, mb_high, width, height), _pps()
    samples = [_slice(i, _macroblocks(i, mb_wide, mb_high, key)) for i in range(max(1, frames))]
    sized = [struct.pack(">I", len(nal)) + nal for nal in samples]
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2avc1mp41")
    duration = TIMESCALE * len(sized) // fps
    mdat_offset = len(ftyp)
    moov = _moov(sps, pps, width, height, [len(s) for s in sized], fps, duration, 0)
    chunk_offset = mdat_offset + len(moov) + 8
    moov = _moov(sps, pps, width, height, [len(s) for s in sized], fps, duration, chunk_offset)
    return ftyp + moov + _box(b"mdat", b"".join(sized))


def _moov(
    sps: bytes,
    pps: bytes,
    width: int,
    height: int,
    sizes: list[int],
    fps: int,
    duration: int,
    chunk_offset: int,
) -> bytes:
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = struct.pack(">IIIIIH", 0, 0, TIMESCALE, duration, 0x10000, 0x100) + bytes(10)
    mvhd += matrix + bytes(24) + struct.pack(">I", 2)  # next_track_ID
    tkhd = struct.pack(">IIIII", 0, 0, 1, 0, duration) + bytes(8)
    tkhd += struct.pack(">hhhH", 0, 0, 0, 0) + matrix
    tkhd += struct.pack(">II", width << 16, height << 16)
    mdhd = struct.pack(">IIII", 0, 0, TIMESCALE, duration) + struct.pack(">HH", 0x55C4, 0)
    hdlr = struct.pack(">I", 0) + b"vide" + bytes(12) + b"VideoHandler\x00"
    stbl = _box(b"stbl", _stsd(sps, pps, width, height) + _tables(sizes, fps, chunk_offset))
    dinf = _box(b"dinf", _full(b"dref", 0, struct.pack(">I", 1) + _full(b"url ", 1, b"")))
    minf = _box(b"minf", _full(b"vmhd", 1, bytes(8)) + dinf + stbl)
    mdia = _box(b"mdia", _full(b"mdhd", 0, mdhd) + _full(b"hdlr", 0, hdlr) + minf)
    trak = _box(b"trak", _full(b"tkhd", 3, tkhd) + mdia)
    return _box(b"moov", _full(b"mvhd", 0, mvhd) + trak)


def _stsd(sps: bytes, pps: bytes, width: int, height: int) -> bytes:
    avcc = bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]) + struct.pack(">H", len(sps)) + sps
    avcc += bytes([1]) + struct.pack(">H", len(pps)) + pps
    entry = bytes(6) + struct.pack(">H", 1) + bytes(16)
    entry += struct.pack(">HHIIIH", width, height, 0x480000, 0x480000, 0, 1)
    entry += bytes(32) + struct.pack(">Hh", 0x18, -1) + _box(b"avcC", avcc)
    return _full(b"stsd", 0, struct.pack(">I", 1) + _box(b"avc1", entry))


def _tables(sizes: list[int], fps: int, chunk_offset: int) -> bytes:
    count = len(sizes)
    stts = _full(b"stts", 0, struct.pack(">III", 1, count, TIMESCALE // fps))
    stsc = _full(b"stsc", 0, struct.pack(">IIII", 1, 1, count, 1))
    table = b"".join(struct.pack(">I", size) for size in sizes)
    stsz = _full(b"stsz", 0, struct.pack(">II", 0, count) + table)
    stco = _full(b"stco", 0, struct.pack(">II", 1, chunk_offset))
    return stts + stsc + stsz + stco


def _box(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", 8 + len(data)) + kind + data


def _full(kind: bytes, flags: int, data: bytes) -> bytes:
    return _box(kind, struct.pack(">I", flags) + data)
