"""What the throwaway servers of the tests (dovecot.py, courier.py,
cyrus.py) share: a folder of their own, removed at cleanup unless kept,
and use as a context manager. A server class defines start(), which
returns the server, and stop()."""

import shutil


class Throwaway:
    """Mixin: needs self.dir, self.keep_dir, start() and stop()."""

    def cleanup(self):
        """Stop and remove the folder unless keep_dir was given."""
        self.stop()
        if not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()
