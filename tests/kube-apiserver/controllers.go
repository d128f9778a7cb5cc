package main

import (
	"context"
	"fmt"
	"net"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	endpointslicecontroller "k8s.io/kubernetes/pkg/controller/endpointslice"
	namespacecontroller "k8s.io/kubernetes/pkg/controller/namespace"
)

// createNode registers a Ready Node. The EndpointSlice controller skips Pods whose spec.nodeName
// names no existing Node, so test Pods set spec.nodeName to this one.
func createNode(ctx context.Context, client kubernetes.Interface, name string, hostIP net.IP) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
		},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{
				Type:               corev1.NodeReady,
				Status:             corev1.ConditionTrue,
				Reason:             "PorticoTestNode",
				LastHeartbeatTime:  metav1.Now(),
				LastTransitionTime: metav1.Now(),
			}},
		},
	}
	if hostIP != nil {
		node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: hostIP.String()}}
	}
	_, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// startControllers runs the kube-controller-manager controllers the tests rely on, in this
// process, until ctx is done. It returns once their informers have synced.
func startControllers(ctx context.Context, cfg *rest.Config, endpointSlices, namespaces bool) error {
	if !endpointSlices && !namespaces {
		return nil
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS = 200
	cfg.Burst = 400
	cfg.UserAgent = "portico-test-controllers"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactory(client, 0)

	var runners []func()
	if endpointSlices {
		// kube-controller-manager's defaults: 100 endpoints per slice, no batching, 5 workers.
		c := endpointslicecontroller.NewController(ctx,
			factory.Core().V1().Pods(),
			factory.Core().V1().Services(),
			factory.Core().V1().Nodes(),
			factory.Discovery().V1().EndpointSlices(),
			100,
			client,
			0,
		)
		runners = append(runners, func() { c.Run(ctx, 5) })
	}
	if namespaces {
		// Finalizes deleted namespaces (deletes their content), so that per-test namespaces go away.
		md, err := metadata.NewForConfig(cfg)
		if err != nil {
			return err
		}
		c := namespacecontroller.NewNamespaceController(ctx,
			client,
			md,
			client.Discovery().ServerPreferredNamespacedResources,
			factory.Core().V1().Namespaces(),
			5*time.Minute,
			corev1.FinalizerKubernetes,
		)
		runners = append(runners, func() { c.Run(ctx, 10) })
	}

	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("informer for %v did not sync", typ)
		}
	}
	for _, run := range runners {
		go run()
	}
	go func() {
		<-ctx.Done()
		factory.Shutdown()
	}()
	return nil
}
