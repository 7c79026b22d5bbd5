// Package deploy puts a verified certificate bundle in front of the
// services that use it: the PEM set (cert, chain, fullchain, key, optional
// combined) written into a versioned directory and switched in by one
// rename(2), owner, group and modes applied, reload hooks run as argv
// without a shell, the live endpoint verified, and a rollback to the
// previous version when any step fails.
//
// The deploy directory is the operator's; under it, certd writes only
// through real directories (.certd-versions, one directory per
// certificate in it, one per version), each opened from its parent's
// handle without following a symlink, and it switches only a live link
// that points at one of the certificate's versions. A symlink anywhere
// else in that tree, or a live link pointing elsewhere, was planted: the
// deploy (or rollback) fails naming it (ErrPlantedLink), writes nothing
// and leaves the live link as it was.
//
// deploy imports nothing of certd but small shared types.
package deploy
