"""``zfs send`` streams: what a stream is, from its first records (``header``), and
reading that header off a descriptor without consuming the stream (``peek``)."""

from .header import BEGIN_RECORD_SIZE, StreamDataset, StreamInfo, decode_xdr_nvlist, parse_header
from .peek import PeekedStream, peek_stream

__all__ = [
    "BEGIN_RECORD_SIZE",
    "PeekedStream",
    "StreamDataset",
    "StreamInfo",
    "decode_xdr_nvlist",
    "parse_header",
    "peek_stream",
]
