module github.com/kensa-scan/kensa

go 1.24.0

require (
	github.com/spf13/cobra v1.10.2
	github.com/x448/float16 v0.8.4
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
)
