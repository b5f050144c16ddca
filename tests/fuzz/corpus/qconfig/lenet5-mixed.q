# 8-bit first and last layers, fc1 at 2 bits
default w=4 a=4 wq=lsq aq=lsq gran=channel
first   w=8 a=8
last    w=8 a=8
layer fc1 w=2 a=4
