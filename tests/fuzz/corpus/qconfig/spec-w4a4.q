w4a4,first=8,last=8
