"""Small asyncio building blocks every package may use: task ownership (cancel and await,
failures logged), bounded drop-oldest queues, and injectable clocks.

It imports nothing of ours, so ``devices``, ``media`` and ``signaling`` can share it without
importing each other (the one import rule in ``docs/architecture.md``).
"""
