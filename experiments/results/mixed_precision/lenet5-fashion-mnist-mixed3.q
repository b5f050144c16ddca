# lowbit mixed RUNS/fashion-mnist/fp32/last.ckpt --budget 3.0, objective hawq, choices 2,3,4,6,8
# weights 24.26 KiB (budget 24.35 KiB), 2.987 bits per weight on average
# lowbit quantization config
default w=8 a=8 wq=lsq aq=lsq gran=channel ste=clipped
layer conv1 w=8
layer conv2 w=8
layer fc1 w=2
layer fc2 w=6
layer fc3 w=8
