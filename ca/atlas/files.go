package atlas

import "github.com/certd/certd/config"

var _ config.FileNamer = (*Config)(nil)

// Files implements config.FileNamer: the files NewFromConfig reads.
func (c *Config) Files() map[string]string {
	return map[string]string{"client_cert": c.ClientCert, "ca": c.CA}
}
