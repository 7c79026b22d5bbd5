// Package config loads certd's YAML configuration: one main file and an
// optional conf.d folder beside it. Decoding is strict (unknown keys,
// duplicate keys and wrong kinds are errors) and every error names the
// file, line and key path; a load reports every problem at once and returns
// no configuration if there is any.
//
// Plug-in sections (accounts, dns, http) are Blocks: the plug-in named by
// the block's type decodes the rest with Block.Decode into its own struct,
// through the table of Decoders cmd/certd hands to Load.
//
// Secrets are references (file:, env:, credential:), resolved only where
// used, into a SecretValue that redacts itself everywhere.
//
// config imports nothing of certd. ca/ and providers/ import it for its
// value types (Block, Secret, Duration) to decode their own blocks.
package config
