from collections.abc import Sequence

def scan(raw: bytes | bytearray | memoryview, order: tuple[bytes, ...],
         group_keys: tuple[bytes | None, ...], numeric_keys: tuple[bytes | None, ...],
         bounds: Sequence[tuple[float, ...] | None], idle_index: int, threshold: float,
         sums: tuple[int, ...], /,
         ) -> tuple[int, int, dict[tuple[bytes | None, ...], tuple[int, ...]],
                    list[tuple[tuple[int, ...], int, int] | None]] | None: ...
