"""A MediaPeer in its own process, for tests that need a peer to die for real (SIGSTOP).

Reads an SDP offer (one JSON line) on stdin, prints the answer (one JSON line), then echoes
every waveform packet back and answers heartbeats until stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys

from media.rtc.peer import MediaPeer, PeerEventKind


async def main() -> None:
    loop = asyncio.get_running_loop()
    offer = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    peer = MediaPeer([])
    answer = await peer.accept_offer(offer["sdp"])
    print(json.dumps({"sdp": answer}), flush=True)
    peer.start()
    try:
        while True:
            event = await peer.events.get()
            if event.kind is PeerEventKind.WAVEFORM and event.packet is not None:
                peer.send_waveform(event.packet)  # echo
    finally:
        await peer.close()


if __name__ == "__main__":
    asyncio.run(main())
