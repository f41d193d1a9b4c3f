"""A pymodbus Modbus TCP server with known values, for tests/modbus.rs.

Binds 127.0.0.1 on a free port and prints `port <n>` once it listens, then serves until
killed (or stdin closes). Units:

* 1: the register map below (non-shared tables, 0-based addresses as on the wire); any
  address outside it answers exception 2, illegal data address.
* 2: the same map, but every request waits `--slow` seconds before the answer (a slow unit
  behind a gateway).
* 3: the same map, but no request is ever answered (a dead unit behind a gateway).
* any other unit: pymodbus answers exception 4, server device failure.

Holding registers (the value each field must decode to is in the comment):

    0-1    f32 21.5      word order big (ABCD)
    2-3    f32 -3.25     little (CDAB)
    4-5    f32 1234.5    big_swap (BADC)
    6-7    f32 0.125     little_swap (DCBA)
    8      i16 -1234
    9      i16 -1        (scale 0.5, offset 10 -> 9.5)
    10-11  u32 4000000000   big
    12-13  i32 -100000      little
    14     u16 65535
    15     0x8004        (bit 2 and bit 15 set)

Input registers: 0 = 1500 (scale 0.1 -> 150.0), 1 = 0xFFFF as i16 (-1).
Coils 0-7: 1 0 1 1 0 0 0 1. Discrete inputs 0-3: 0 1 0 0.
"""

import argparse
import asyncio
import struct
import sys

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice


def words(fmt, value, order):
    """The two registers of a 32-bit value in the given word order."""
    a, b, c, d = struct.pack(fmt, value)
    layouts = {
        "big": (a, b, c, d),
        "little": (c, d, a, b),
        "big_swap": (b, a, d, c),
        "little_swap": (d, c, b, a),
    }
    w = layouts[order]
    return [(w[0] << 8) | w[1], (w[2] << 8) | w[3]]


def holding():
    registers = []
    registers += words(">f", 21.5, "big")
    registers += words(">f", -3.25, "little")
    registers += words(">f", 1234.5, "big_swap")
    registers += words(">f", 0.125, "little_swap")
    registers += [(-1234) & 0xFFFF, (-1) & 0xFFFF]
    registers += words(">I", 4_000_000_000, "big")
    registers += words(">i", -100_000, "little")
    registers += [65535, 0x8004]
    assert len(registers) == 16
    return registers


def tables():
    return (
        [SimData(0, values=[True, False, True, True, False, False, False, True], datatype=DataType.BITS)],
        [SimData(0, values=[False, True, False, False], datatype=DataType.BITS)],
        [SimData(0, values=holding(), datatype=DataType.REGISTERS)],
        [SimData(0, values=[1500, 0xFFFF], datatype=DataType.REGISTERS)],
    )


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--slow", type=float, default=5.0, help="seconds unit 2 waits")
    args = parser.parse_args()

    async def slow(*_args):
        await asyncio.sleep(args.slow)
        return None

    async def dead(*_args):
        await asyncio.Event().wait()

    devices = [
        SimDevice(id=1, simdata=tables()),
        SimDevice(id=2, simdata=tables(), action=slow),
        SimDevice(id=3, simdata=tables(), action=dead),
    ]
    server = ModbusTcpServer(devices, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]
    print(f"port {port}", flush=True)
    # Serve until the test closes our stdin (or kills us).
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
