"""The server's batching: the model inputs of concurrent requests through the network in one forward pass."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class Batcher:
    """Runs the model on the images of concurrent requests together.

    ``submit`` queues one model input; a single worker takes up to
    ``max_batch`` inputs, or whatever arrived within ``max_wait`` seconds of
    the first, and runs them in one forward pass in a thread.  It waits only
    while other requests are still being preprocessed (``expecting``), so a
    lone request pays no wait.
    """

    def __init__(self, forward, max_batch: int, max_wait: float):
        self.forward, self.max_batch, self.max_wait = forward, max_batch, max_wait
        self.queue: asyncio.Queue = asyncio.Queue()
        self.coming = 0  # requests being preprocessed: their inputs will arrive soon
        self.batches: list[int] = []  # sizes of the batches run, newest last (kept short)
        # a thread of its own: asyncio's default executor also parses big JSON bodies, which must not delay it
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="paddle-mnist-forward")

    @contextlib.contextmanager
    def expecting(self):
        self.coming += 1
        try:
            yield
        finally:
            self.coming -= 1

    async def submit(self, model_input: np.ndarray) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((model_input, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(items) < self.max_batch:
                if self.queue.qsize():
                    items.append(self.queue.get_nowait())
                    continue
                if not self.coming or loop.time() >= deadline:
                    break
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), deadline - loop.time()))
                except asyncio.TimeoutError:
                    break
            self.batches = self.batches[-99:] + [len(items)]
            try:
                batch = np.stack([x for x, _ in items])
                outputs = await loop.run_in_executor(self.executor, self.forward, batch)
            except Exception as e:  # the model failed: every waiting request learns it
                for _, future in items:
                    if not future.done():
                        future.set_exception(e)
                continue
            for (_, future), row in zip(items, outputs):
                if not future.done():
                    future.set_result(row)
