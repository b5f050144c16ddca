# written by lowbit; re-render with: gnuplot sensitivity-lenet5-fashion-mnist.gp
set terminal pngcairo size 960,600 font 'DejaVu Sans,11' linewidth 1.5
set output 'sensitivity-lenet5-fashion-mnist.png'
set encoding utf8
set termoption noenhanced
set grid lc rgb '#d8d8d8' lw 0.7
set border 3 lw 1
set tics nomirror out
set key box opaque samplen 2 spacing 1.1
set style data linespoints
set pointsize 1.2
$sens << EOD
0 "conv1" 1.02592 0.0738383 0.00914948 0.00289501 0.00141642 8.34465e-06 0.705925 0.215934 0.0627162 0.0129609 0.00069683 4.5265e-05
1 "conv2" 0.274964 0.228037 0.019215 0.00259741 0.00150012 2.84091e-05 0.130423 0.0583857 0.0178605 0.00484348 0.000311453 1.90069e-05
2 "fc1" 0.125064 0.192173 0.0156203 0.00429125 0.000856809 1e-06 0.0382605 0.0157178 0.00458565 0.00138086 0.000102745 6.52641e-06
3 "fc2" 0.0877846 0.0446175 0.00598681 0.00144793 0.000354134 8.14497e-05 0.0308902 0.0121139 0.00324663 0.00086309 5.50925e-05 3.41179e-06
4 "fc3" 0.18762 0.0744401 0.0156697 0.00332327 0.00100764 0.000214875 0.0791859 0.0376159 0.0104307 0.00262546 0.000145486 9.36201e-06
EOD
set logscale y
set format y '%.0e'
set xtics rotate by -30
set key below horizontal
set xrange [-0.5:4.5]
set multiplot layout 1,2 title 'Per-layer sensitivity (only that layer quantized)'
set title 'measured loss increase on the calibration split'
set ylabel 'loss increase (log; <= 0 drawn at 1e-6)'
plot $sens using 1:3:xtic(2) title 'w1', $sens using 1:4:xtic(2) title 'w2', $sens using 1:5:xtic(2) title 'w3', $sens using 1:6:xtic(2) title 'w4', $sens using 1:7:xtic(2) title 'w6', $sens using 1:8:xtic(2) title 'w8'
set title 'HAWQ-V2: tr(H)/n x ||Q(w)-w||^2'
set ylabel 'Omega (log)'
plot $sens using 1:9:xtic(2) title 'w1', $sens using 1:10:xtic(2) title 'w2', $sens using 1:11:xtic(2) title 'w3', $sens using 1:12:xtic(2) title 'w4', $sens using 1:13:xtic(2) title 'w6', $sens using 1:14:xtic(2) title 'w8'
unset multiplot
