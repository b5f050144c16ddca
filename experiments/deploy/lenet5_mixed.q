# A mixed-precision LeNet-5 for the deployment figures: 8-bit first and last layers, 4-bit
# conv2 and fc2, and the largest layer (fc1: 48,000 of the 61,706 parameters) at 2 bits.
default w=4 a=4 wq=lsq aq=lsq gran=channel
first   w=8 a=8
last    w=8 a=8
layer fc1 w=2 a=4
