package scan

// The engine opens every format kensa reads: a program that imports package scan (and
// scan/detect/all for the detectors) scans safetensors and GGUF models without the CLI.
import (
	_ "github.com/kensa-scan/kensa/formats/gguf"        // registers GGUF with formats.Open
	_ "github.com/kensa-scan/kensa/formats/pickle"      // registers plain pickles (.pkl, joblib) with formats.Open
	_ "github.com/kensa-scan/kensa/formats/pytorch"     // registers PyTorch checkpoints (zip, legacy) and 7z with formats.Open
	_ "github.com/kensa-scan/kensa/formats/safetensors" // registers safetensors with formats.Open
)
