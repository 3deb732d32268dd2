"""An SMTP server for the portal's mail tests: aiosmtpd (PyPI, in the test venv) on a free
loopback port, keeping each message it accepts as a JSON file in a folder.

Usage: python sink.py PORT FOLDER [HOLD_SECONDS]. With HOLD_SECONDS, the first message's end of
data is answered only after that long, and kept only if the client is still connected then: a
portal killed meanwhile has delivered nothing (what a real server does). Prints "ready PORT".
"""
import asyncio
import json
import os
import signal
import sys

from aiosmtpd.controller import Controller


class Keep:
    def __init__(self, folder, hold):
        self.folder = folder
        self.hold = hold
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        if self.hold > 0:
            hold, self.hold = self.hold, 0
            await asyncio.sleep(hold)
            if server.transport is None or server.transport.is_closing():
                return "451 the client went away"
        self.count += 1
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        path = os.path.join(self.folder, "%06d.json" % self.count)
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 kept"


def main():
    port, folder = int(sys.argv[1]), sys.argv[2]
    hold = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    os.makedirs(folder, exist_ok=True)
    controller = Controller(Keep(folder, hold), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready %d" % port, flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()


if __name__ == "__main__":
    main()
