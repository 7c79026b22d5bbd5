package deploy

import (
	"errors"
	"fmt"
	"io/fs"
)

// Remove takes a retired certificate's files away: the live link first
// (a server reloading from now on no longer finds it), then every stored
// version, private keys included. Everything is removed through
// directory handles certd opened itself, following no symlink; a live
// path that is not certd's own link is refused, and nothing outside
// <Dir>/<Name> and <Dir>/.certd-versions/<Name> is touched. Removing what
// is already gone is not an error. It returns whether anything was there.
func Remove(s Spec) (bool, error) {
	if err := checkName(s.Name); err != nil {
		return false, err
	}
	root, err := openDirPath(s.Dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer root.Close()
	t := &tree{s: s, root: root}
	if _, err := t.liveVersion(); err != nil {
		return false, err // not certd's link: left alone
	}
	found := false
	if k, err := root.kind(s.Name); err != nil {
		return false, err
	} else if k != kindMissing {
		found = true
		if err := root.removeAll(s.Name); err != nil {
			return found, fmt.Errorf("removing the live link: %w", err)
		}
		if err := root.sync(); err != nil {
			return found, err
		}
	}
	vk, err := root.kind(versionsDir)
	if err != nil || vk == kindMissing {
		return found, err
	}
	vers, err := root.openDir(versionsDir)
	if err != nil {
		return found, err
	}
	defer vers.Close()
	if k, err := vers.kind(s.Name); err != nil {
		return found, err
	} else if k == kindLink {
		return found, vers.planted(s.Name)
	} else if k != kindMissing {
		found = true
		if err := vers.removeAll(s.Name); err != nil {
			return found, fmt.Errorf("removing the stored versions: %w", err)
		}
	}
	return found, vers.sync()
}
