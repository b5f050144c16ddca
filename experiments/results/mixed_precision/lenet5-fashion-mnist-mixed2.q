# lowbit mixed RUNS/fashion-mnist/fp32/last.ckpt --budget 2.0, objective hawq, choices 1,2,3,4,6,8
# weights 15.94 KiB (budget 16.85 KiB), 1.878 bits per weight on average
# lowbit quantization config
default w=8 a=8 wq=lsq aq=lsq gran=channel ste=clipped
layer conv1 w=8
layer conv2 w=8
layer fc1 w=1 wq=binary
layer fc2 w=4
layer fc3 w=8
