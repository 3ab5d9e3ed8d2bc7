# One-thread torch.nn.functional.linear at the shapes of scripts/research/gemm_vs_torch/src/main.rs.
import torch, time
torch.set_num_threads(1)
for m,n,k in [(128,1152,384),(128,384,384),(128,1536,384),(128,384,1536),(32,1536,384),(8,1536,384)]:
    x=torch.randn(m,k); w=torch.randn(n,k)
    for _ in range(20): torch.nn.functional.linear(x,w)
    t=time.perf_counter(); reps=200
    for _ in range(reps): torch.nn.functional.linear(x,w)
    s=(time.perf_counter()-t)/reps
    print(f"{m}x{n}x{k}: {s*1e3:.3f} ms, {2*m*n*k/s/1e9:.1f} GFLOP/s")
