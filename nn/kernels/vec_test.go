package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestExp(t *testing.T) {
	worst := 0.0
	check := func(x float32) {
		got := Exp(x)
		want := math.Exp(float64(x))
		if want > math.MaxFloat32 {
			if !math.IsInf(float64(got), 1) {
				t.Fatalf("Exp(%v) = %v, want +Inf", x, got)
			}
			return
		}
		if want < 0x1p-126 { // subnormal: absolute error of a few subnormal steps
			if d := math.Abs(float64(got) - want); d > 4*0x1p-149 {
				t.Fatalf("Exp(%v) = %v, want %v", x, got, want)
			}
			return
		}
		ulp := math.Abs(float64(got)-want) / (want * 0x1p-23)
		worst = max(worst, ulp)
		if ulp > 2 {
			t.Fatalf("Exp(%v) = %v, want %v (%.2f ulp)", x, got, want, ulp)
		}
	}
	r := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 200000; i++ {
		check(float32(r.Float64()*200 - 110))
		check(-float32(r.ExpFloat64()))
	}
	for _, x := range []float32{0, -0, 1, -1, 88.7, 88.72, -87.3, -100, -103.9, 0.5, -0.5, 1e-8, -1e-8, 0.34657359, -0.34657359} {
		check(x)
	}
	if v := Exp(float32(math.NaN())); v == v {
		t.Error("Exp(NaN) is not NaN")
	}
	if v := Exp(float32(math.Inf(-1))); v != 0 {
		t.Errorf("Exp(-Inf) = %v", v)
	}
	if v := Exp(float32(math.Inf(1))); !math.IsInf(float64(v), 1) {
		t.Errorf("Exp(+Inf) = %v", v)
	}
	t.Logf("worst error %.2f ulp", worst)
}

func TestDot(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	for _, n := range []int{0, 1, 3, 7, 8, 16, 31, 64, 65, 128, 1000} {
		a, b := make([]float32, n), make([]float32, n+3)
		var want, mag float64
		for i := range a {
			a[i], b[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
			want += float64(a[i]) * float64(b[i])
			mag += math.Abs(float64(a[i]) * float64(b[i]))
		}
		got := Dot(a, b)
		if d := math.Abs(float64(got) - want); d > float64(n+2)*0x1p-24*mag {
			t.Fatalf("n %d: Dot %v, want %v", n, got, want)
		}
	}
}

func BenchmarkExp(b *testing.B) {
	x := make([]float32, 1024)
	for i := range x {
		x[i] = -float32(i) / 64
	}
	var s float32
	for b.Loop() {
		for _, v := range x {
			s += Exp(v)
		}
	}
	_ = s
}
