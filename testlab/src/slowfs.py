"""A pass-through FUSE filesystem over ROOT, mounted at MOUNT, whose fsync waits while
the file FLAG exists: a disk whose flushes stall, as one behind a busy disk's writeback
does. Used by testlab's SlowDisk (slowdisk.rs). Needs Debian's python3-fusepy."""

import errno
import os
import sys
import time

from fusepy import FUSE, FuseOSError, Operations


class Stalling(Operations):
    def __init__(self, root, flag):
        self.root, self.flag = root, flag

    def _p(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def _stall(self):
        while os.path.exists(self.flag):
            time.sleep(0.01)

    def access(self, path, mode):
        if not os.access(self._p(path), mode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        os.chmod(self._p(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._p(path), uid, gid)

    def getattr(self, path, fh=None):
        # By handle when there is one: with hard_remove a file unlinked while open has
        # no path any more.
        st = os.fstat(fh) if fh is not None else os.lstat(self._p(path))
        keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid")
        return {k: getattr(st, k) for k in keys}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._p(path))

    def mkdir(self, path, mode):
        os.mkdir(self._p(path), mode)

    def rmdir(self, path):
        os.rmdir(self._p(path))

    def unlink(self, path):
        os.unlink(self._p(path))

    def rename(self, old, new):
        os.rename(self._p(old), self._p(new))

    def statfs(self, path):
        s = os.statvfs(self._p(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")
        return {k: getattr(s, k) for k in keys}

    def utimens(self, path, times=None):
        os.utime(self._p(path), times)

    def open(self, path, flags):
        return os.open(self._p(path), flags)

    def create(self, path, mode, fi=None):
        return os.open(self._p(path), os.O_WRONLY | os.O_CREAT, mode)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._p(path), length)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)
        return 0

    def fsync(self, path, datasync, fh):
        self._stall()
        os.fsync(fh)
        return 0

    def fsyncdir(self, path, datasync, fh):
        self._stall()
        return 0


if __name__ == "__main__":
    root, mount, flag = sys.argv[1:4]
    # hard_remove: an unlink goes through at once. Without it, libfuse renames a file
    # whose release has not arrived yet (close() does not wait for it) to .fuse_hidden*,
    # and etcd, which writes and removes a probe file in its new wal.tmp and then checks
    # that the directory is empty, finds that name there and exits.
    FUSE(Stalling(root, flag), mount, foreground=True, nothreads=False, hard_remove=True)
