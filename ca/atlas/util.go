package atlas

import "fmt"

func indexKey(key string, i int) string { return fmt.Sprintf("%s[%d]", key, i) }
