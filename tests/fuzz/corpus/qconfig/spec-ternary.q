wta4,first=0
