// Package all registers every kensa detector with the scan engine; import it for its side
// effect.
package all

import (
	_ "github.com/kensa-scan/kensa/scan/detect/code"        // what loading a model would import or call (pickles)
	_ "github.com/kensa-scan/kensa/scan/detect/diff"        // differential analysis against a base model (--base)
	_ "github.com/kensa-scan/kensa/scan/detect/head"        // classifier-head trojan signature
	_ "github.com/kensa-scan/kensa/scan/detect/metadata"    // chat templates, metadata strings
	_ "github.com/kensa-scan/kensa/scan/detect/payload"     // data hidden in low mantissa bits
	_ "github.com/kensa-scan/kensa/scan/detect/probe"       // forward passes: trigger sweep (--probe)
	_ "github.com/kensa-scan/kensa/scan/detect/structure"   // layout forensics
	_ "github.com/kensa-scan/kensa/scan/detect/tensorstats" // per-tensor and per-neuron statistics
)
