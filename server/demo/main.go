// Command demo prints a greeting. It is the workspace remote-gopls serves
// when no workspace is configured, so a new install has something to open.
package main

import (
	"fmt"

	"example.com/demo/greet"
)

func main() {
	g := greet.Greeter{Mark: "!"}
	fmt.Println(g.Hello("gopls"))
}
