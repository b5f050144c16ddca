default w=4 a=4 wq=lsq aq=lsq gran=channel ste=clipped
first   w=8 a=8
last    w=8 a=8
layer conv2 w=2 a=4 wq=minmax
