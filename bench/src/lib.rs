//! Side-by-side benchmarks: each scenario is measured next to a baseline
//! taken in the same run, and reported as a ratio.
