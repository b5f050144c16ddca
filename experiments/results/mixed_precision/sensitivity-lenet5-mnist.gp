# written by lowbit; re-render with: gnuplot sensitivity-lenet5-mnist.gp
set terminal pngcairo size 960,600 font 'DejaVu Sans,11' linewidth 1.5
set output 'sensitivity-lenet5-mnist.png'
set encoding utf8
set termoption noenhanced
set grid lc rgb '#d8d8d8' lw 0.7
set border 3 lw 1
set tics nomirror out
set key box opaque samplen 2 spacing 1.1
set style data linespoints
set pointsize 1.2
$sens << EOD
0 "conv1" 0.0588696 0.000848808 0.000508775 0.000690068 1e-06 1e-06 0.0299908 0.0100623 0.0022253 0.00061911 3.86916e-05 2.10761e-06
1 "conv2" 0.0787264 0.0280636 1e-06 1e-06 1e-06 1e-06 0.0124702 0.0046768 0.00125463 0.000328252 2.15679e-05 1.38124e-06
2 "fc1" 0.0267805 0.0346464 1e-06 0.000544305 1.83252e-05 3.86216e-05 0.00536439 0.00216347 0.000624148 0.000185701 1.37576e-05 8.7636e-07
3 "fc2" 0.0222563 0.00830673 1e-06 1.65516e-05 1e-06 2.48782e-05 0.0047021 0.00183514 0.000488475 0.000131312 8.15312e-06 5.30959e-07
4 "fc3" 0.0327439 0.00710892 1e-06 8.41717e-05 0.000135206 1.03448e-05 0.00498123 0.00230419 0.000562769 0.000133623 7.75605e-06 4.95126e-07
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
