module github.com/sikkerchat/sikkerchat

go 1.26.8
