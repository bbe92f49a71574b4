"""A real Modbus TCP server for the tests (Debian's python3-pymodbus 3.0), on 127.0.0.1:<port>.

Unit 1 holds the register map that tests/integration/modbus.test.ts expects (each type, both
word orders, coils and discrete inputs). Prints "READY <port>" once it listens; stopped by pid.
"""
import asyncio
import struct
import sys
import types

try:
    import pymodbus.server  # noqa: F401
except ImportError:
    # pymodbus imports its serial transports at load time; Debian only recommends pyserial-asyncio
    # (absent with --no-install-recommends) and TCP never uses it.
    sys.modules.setdefault("serial", types.ModuleType("serial"))
    stub = types.ModuleType("serial_asyncio")
    stub.create_serial_connection = None
    sys.modules.setdefault("serial_asyncio", stub)

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server import StartAsyncTcpServer


def words32(fmt, value, order):
    hi, lo = struct.unpack(">HH", struct.pack(">" + fmt, value))
    return [hi, lo] if order == "big" else [lo, hi]


def u16(value):
    return struct.unpack(">H", struct.pack(">h", value))[0]


holding = [0] * 32
holding[0] = 1234                                   # uint16, scale 0.1 -> 123.4
holding[1] = u16(-1234)                             # int16 -> -1234
holding[2:4] = words32("I", 305419896, "big")       # uint32 big
holding[4:6] = words32("i", -123456, "little")      # int32 little
holding[6:8] = words32("f", 21.5, "big")            # float32 big
holding[8:10] = words32("f", -3.25, "little")       # float32 little
holding[10] = 500                                   # uint16 setpoint, scale 0.1 offset -10 -> 40
holding[12:14] = words32("I", 7, "big")             # uint32 writable

inputs = [0] * 16
inputs[0] = 65535                                   # uint16
inputs[1:3] = words32("I", 4000000000, "little")    # uint32 little
inputs[3:5] = words32("i", -2, "big")               # int32 big
inputs[5:7] = words32("f", 1013.25, "little")       # float32 little
inputs[7] = u16(-20)                                # int16, scale 0.5 offset 100 -> 90

coils = [True, False, False, False, False, False, False, False]
discrete = [False, True, False, False, False, False, False, False]

context = ModbusServerContext(
    slaves=ModbusSlaveContext(
        hr=ModbusSequentialDataBlock(0, holding),
        ir=ModbusSequentialDataBlock(0, inputs),
        co=ModbusSequentialDataBlock(0, coils),
        di=ModbusSequentialDataBlock(0, discrete),
        zero_mode=True,
    ),
    single=True,
)


async def main(port):
    # allow_reuse_address: a test may stop the server and start it again on the same port while
    # the old connections wait out TIME_WAIT.
    server = await StartAsyncTcpServer(
        context=context, address=("127.0.0.1", port), defer_start=True, allow_reuse_address=True
    )
    print(f"READY {port}", flush=True)  # listening a moment later: the test connects until it works
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
