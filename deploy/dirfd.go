package deploy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// ErrPlantedLink is wrapped by the error of a deploy or rollback that met
// a symlink certd did not make where it writes: in the versions tree
// (.certd-versions, a certificate's directory in it, a version), or as
// the live path pointing anywhere but at one of its certificate's
// versions. certd never writes or switches through such a link: it would
// put the private key wherever the link points. Nothing is changed, and
// the live path keeps serving what it served.
var ErrPlantedLink = errors.New("planted symlink")

// dirHandle is an open directory. Everything certd writes under a deploy
// directory is reached from the deploy directory's handle, one name at a
// time, with O_NOFOLLOW: a path is never resolved again after it was
// checked, so a symlink put in place of a directory is refused rather
// than followed, whatever it points to (outside the deploy directory or
// back inside it). The deploy directory itself is configuration: its
// path is opened as the operator wrote it.
type dirHandle struct {
	fd   int
	path string // for messages only: nothing is opened by it
}

// openDirPath opens the directory at path, following it as given: the
// deploy directory (made first with its parents when create is set), or
// the live path for reading.
func openDirPath(path string, create bool) (*dirHandle, error) {
	if create {
		if err := os.MkdirAll(path, 0o755); err != nil {
			return nil, err
		}
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &dirHandle{fd: fd, path: path}, nil
}

func (d *dirHandle) Close() error { return unix.Close(d.fd) }

func (d *dirHandle) join(name string) string { return filepath.Join(d.path, name) }

func (d *dirHandle) pathErr(op, name string, err error) error {
	return &os.PathError{Op: op, Path: d.join(name), Err: err}
}

// entry kinds, from lstat.
const (
	kindMissing = iota
	kindDir
	kindLink
	kindOther
)

// kind says what name is, without following a symlink.
func (d *dirHandle) kind(name string) (int, error) {
	var st unix.Stat_t
	err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		return kindMissing, nil
	case err != nil:
		return 0, d.pathErr("lstat", name, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return kindDir, nil
	case unix.S_IFLNK:
		return kindLink, nil
	default:
		return kindOther, nil
	}
}

func (d *dirHandle) readlink(name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(d.fd, name, buf)
		if err != nil {
			return "", d.pathErr("readlink", name, err)
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// planted is the error for a symlink certd did not make at name.
func (d *dirHandle) planted(name string) error {
	target, err := d.readlink(name)
	if err != nil {
		target = "?"
	}
	return fmt.Errorf("%w: %s is a symlink (to %s) where certd keeps only directories it made; refusing to write through it: "+
		"remove it, and find out who put it there", ErrPlantedLink, d.join(name), target)
}

// openDir opens the directory name in d without following a symlink.
func (d *dirHandle) openDir(name string) (*dirHandle, error) {
	fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		return &dirHandle{fd: fd, path: d.join(name)}, nil
	}
	if k, kerr := d.kind(name); kerr == nil && k == kindLink {
		return nil, d.planted(name)
	}
	return nil, d.pathErr("open", name, err)
}

// subDir opens the directory name in d; with create, it is made first
// (mode 0755 whatever the umask) when missing.
func (d *dirHandle) subDir(name string, create bool) (*dirHandle, error) {
	if !create {
		return d.openDir(name)
	}
	err := unix.Mkdirat(d.fd, name, 0o755)
	if errors.Is(err, unix.EEXIST) {
		return d.openDir(name) // a symlink there is refused by openDir
	}
	if err != nil {
		return nil, d.pathErr("mkdir", name, err)
	}
	return d.madeDir(name)
}

// newDir makes the directory name in d, which must not exist, and opens
// it.
func (d *dirHandle) newDir(name string) (*dirHandle, error) {
	if err := unix.Mkdirat(d.fd, name, 0o755); err != nil {
		return nil, d.pathErr("mkdir", name, err)
	}
	return d.madeDir(name)
}

// madeDir opens a directory just made, sets its exact mode and syncs its
// entry in d.
func (d *dirHandle) madeDir(name string) (*dirHandle, error) {
	sub, err := d.openDir(name)
	if err != nil {
		return nil, err
	}
	if err := unix.Fchmod(sub.fd, 0o755); err != nil {
		sub.Close()
		return nil, sub.pathErr("chmod", ".", err)
	}
	if err := d.sync(); err != nil {
		sub.Close()
		return nil, err
	}
	return sub, nil
}

func (d *dirHandle) sync() error {
	if err := unix.Fsync(d.fd); err != nil {
		return &os.PathError{Op: "sync", Path: d.path, Err: err}
	}
	return nil
}

// writeFile creates name in d (it must not exist) with data, its exact
// mode and owner whatever the umask, synced. The file is created 0600
// first so that no other user can open it before its final mode and
// owner are in place.
func (d *dirHandle) writeFile(name string, data []byte, mode os.FileMode, uid, gid int) error {
	fd, err := unix.Openat(d.fd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("writing %s: %w", d.join(name), err)
	}
	f := os.NewFile(uintptr(fd), d.join(name))
	_, err = f.Write(data)
	if err == nil && (uid >= 0 || gid >= 0) {
		err = f.Chown(uid, gid)
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", d.join(name), err)
	}
	return nil
}

// readFile reads name in d, following nothing.
func (d *dirHandle) readFile(name string) ([]byte, error) {
	fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, d.pathErr("open", name, err)
	}
	f := os.NewFile(uintptr(fd), d.join(name))
	defer f.Close()
	return io.ReadAll(f)
}

// names lists d's entries, sorted.
func (d *dirHandle) names() ([]string, error) {
	// A descriptor of its own, so that listing never moves d's offset.
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: d.path, Err: err}
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// symlink makes name in d a symlink to target.
func (d *dirHandle) symlink(target, name string) error {
	if err := unix.Symlinkat(target, d.fd, name); err != nil {
		return d.pathErr("symlink", name, err)
	}
	return nil
}

// rename replaces to with from, both in d, with one rename(2).
func (d *dirHandle) rename(from, to string) error {
	if err := unix.Renameat(d.fd, from, d.fd, to); err != nil {
		return &os.LinkError{Op: "rename", Old: d.join(from), New: d.join(to), Err: err}
	}
	return nil
}

// removeAll removes name from d and, when it is a directory, everything
// in it, following no symlink: a link is removed, never what it points
// to.
func (d *dirHandle) removeAll(name string) error {
	k, err := d.kind(name)
	if err != nil {
		return err
	}
	switch k {
	case kindMissing:
		return nil
	case kindDir:
		sub, err := d.openDir(name)
		if err != nil {
			return err
		}
		names, err := sub.names()
		for _, n := range names {
			if err == nil {
				err = sub.removeAll(n)
			}
		}
		sub.Close()
		if err != nil {
			return err
		}
		if err := unix.Unlinkat(d.fd, name, unix.AT_REMOVEDIR); err != nil {
			return d.pathErr("remove", name, err)
		}
		return nil
	default:
		if err := unix.Unlinkat(d.fd, name, 0); err != nil {
			return d.pathErr("remove", name, err)
		}
		return nil
	}
}
