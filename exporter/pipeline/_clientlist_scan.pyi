from collections.abc import Sequence

Arrays = tuple[bytes, bytes, bytes, bytes, bytes]  # ids, combos, net_in, net_out, cmds

def scan(raw: bytes | bytearray | memoryview, order: tuple[bytes, ...],
         group_keys: tuple[bytes | None, ...], numeric_keys: tuple[bytes | None, ...],
         bounds: Sequence[tuple[float, ...] | None], idle_index: int, threshold: float,
         sums: tuple[int, ...], track: tuple[int, ...] | None, /,
         ) -> tuple[int, int, list[tuple[tuple[bytes | None, ...], tuple[int, ...]]],
                    list[tuple[tuple[int, ...], int, int] | None], Arrays | None] | None: ...

def diff(previous: Arrays, nprevious: int, current: Arrays, ncurrent: int, /,
         ) -> tuple[tuple[int, ...], tuple[int, ...],
                    tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]], bool]: ...
