"""A gunicorn gthread worker that takes a new connection only while it has
a thread free.

gunicorn's gthread workers all wait on the one listening socket, and the
first to wake accepts every connection it can. Kept-alive connections then
stay with the worker that accepted them: a burst of clients, or the few
long-lived connections a proxy keeps to its upstream, can all land on one
worker. Its threads share one GIL, so that worker serves them on one core
while the other workers idle (bench/cabinet_dashboard.py, 8 connections on
3 workers: 250 req/s with all on one worker, over 500 when spread).

This worker stops watching the listening socket while each of its threads
has a request, and watches it again as one finishes: a new connection is
accepted by a worker that can start on it now, or waits in the kernel's
backlog until one can. Requests on connections it already holds are
served as before.

contrib/gunicorn.conf.py sets ``worker_class`` to this class.
"""

from __future__ import annotations

from gunicorn.workers.gthread import ThreadWorker


class BalancedThreadWorker(ThreadWorker):

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Requests handed to the thread pool and not finished yet. Touched
        # by the main thread only (enqueue_req and finish_request run there).
        self.busy = 0

    def has_free_thread(self) -> bool:
        return self.busy < self.cfg.threads

    def set_accept_enabled(self, enabled):
        super().set_accept_enabled(enabled and self.has_free_thread())

    def enqueue_req(self, conn):
        super().enqueue_req(conn)
        self.busy += 1
        if not self.has_free_thread():
            self.set_accept_enabled(False)

    def finish_request(self, conn, fs):
        self.busy -= 1
        # The run loop turns accepting back on at its next turn (it calls
        # set_accept_enabled while it is off and connections are allowed).
        super().finish_request(conn, fs)
