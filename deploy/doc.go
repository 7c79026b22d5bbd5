// Package deploy puts a verified certificate bundle in front of the
// services that use it: the PEM set (cert, chain, fullchain, key, optional
// combined) written into a versioned directory and switched in by one
// rename(2), owner, group and modes applied, reload hooks run as argv
// without a shell, the live endpoint verified, and a rollback to the
// previous version when any step fails.
//
// deploy imports nothing of certd but small shared types.
package deploy
